// Public API of qed-image on Node: the portable core (core.ts) with local files, which are
// also the default FileStore of every operation.
import './io/node-default.js';

export * from './core.js';
export { NodeFile, NodeFileStore } from './io/node-file.js';
