// Public API of qed-image on Node: the portable core (core.ts) with local files, which are
// also the default FileStore of every operation, and the NBD server (node:net, node:tls).
import './io/node-default.js';
import { chainBlockStatus } from './engine/chain-status.js';
import { startNbdServer, type NbdServer, type NbdServerOptions } from './nbd/server/server.js';

export * from './core.js';
export { NodeFile, NodeFileStore } from './io/node-file.js';
export type { NbdServer, ListenOn } from './nbd/server/server.js';
export type { NbdExport, TlsSettings } from './nbd/server/exports.js';

export type ServeNbdOptions = Omit<NbdServerOptions, 'chainStatus'>;

/** Serve block devices over NBD until stop(); the devices stay open (close them after stop()). */
export function serveNbd(options: ServeNbdOptions): Promise<NbdServer> {
  return startNbdServer({ ...options, chainStatus: chainBlockStatus });
}
