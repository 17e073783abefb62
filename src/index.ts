// Public API of qed-image on Node: the portable core (core.ts), local files (the default
// store of every call), Node streams over images, and the NBD server (node:net, node:tls).
import './io/node-default.js';
import { startNbdServer, type NbdServer, type NbdServerOptions } from './nbd/server/server.js';

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

/**
 * Serve open images over NBD until `stop()`, as qemu-nbd does; the images stay open (close
 * them after stop()).
 */
export function serveNbd(options: ServeNbdOptions): Promise<NbdServer> {
  return startNbdServer(options);
}
