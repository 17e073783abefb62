// The FileStore used when a caller passes none. The portable core has none: the package's
// Node entry (src/index.ts) and the CLI install local files here, so that nothing below them
// loads node:fs and the engine can run in a browser or over a remote store.
import { UsageError } from '../base/errors.js';
import type { FileStore } from './block-file.js';

let installed: FileStore | null = null;

/** The store every call uses when its options name none (on Node: local files); null removes it. */
export function setDefaultFileStore(store: FileStore | null): void {
  installed = store;
}

export function defaultFileStore(): FileStore {
  if (!installed) {
    throw new UsageError('no file store: pass options.store (the package\'s Node entry provides local files)');
  }
  return installed;
}
