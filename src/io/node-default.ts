// Imported for its effect: local files become the default FileStore (Node entry and CLI).
import { setDefaultFileStore } from './default-store.js';
import { NodeFileStore } from './node-file.js';

setDefaultFileStore(new NodeFileStore());
