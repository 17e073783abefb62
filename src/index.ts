// Public API of qed-image on Node: the portable core (core.ts), local files (the default
// store of every call), Node streams over images, and the NBD server (node:net, node:tls).
import './io/node-default.js';
import { startNbdServer, type NbdServer, type NbdServerOptions } from './nbd/server/server.js';

import { unclosedImages } from './api/open-images.js';

export * from './core.js';
export { NodeFileStore, type NodeOpenOptions } from './io/node-file.js';
export {
  createReadStream, createWriteStream, writeImageFromStream, type ImageWriteStream,
  type ReadStreamOptions, type ImageReadStream, type SparseChunk, type WriteStreamOptions,
} from './api/streams.js';
export type { NbdServer, ListenOn, NbdServerOptions } from './nbd/server/server.js';
export type { NbdExport, TlsSettings } from './nbd/server/exports.js';

/** Options of serveNbd: where to listen, what to export, TLS, limits. */
export type ServeNbdOptions = NbdServerOptions;

// When the event loop runs dry with writable images still open, close them (writing their
// tables back) rather than lose their writes, and say so: the program forgot close().
process.on('beforeExit', () => {
  const forgotten = unclosedImages();
  if (forgotten.length === 0) return;
  for (const image of forgotten) {
    process.emitWarning(`'${image.path}' was not closed; closing it at exit so that its writes are kept (use close() or await using)`, { code: 'QED_IMAGE_NOT_CLOSED' });
  }
  void Promise.allSettled(forgotten.map((image) => image.close())).then((results) => {
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') continue;
      process.exitCode ||= 1;
      process.emitWarning(`'${forgotten[i]!.path}' could not be closed at exit: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`, { code: 'QED_IMAGE_CLOSE_FAILED' });
    }
  });
});

/**
 * Serve open images over NBD until `stop()`, as qemu-nbd does; the images stay open (close
 * them after stop()).
 */
export function serveNbd(options: ServeNbdOptions): Promise<NbdServer> {
  return startNbdServer(options);
}
