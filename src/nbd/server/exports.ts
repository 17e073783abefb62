// What a server offers: named exports over block devices, and the settings every connection
// shares. The block status walk through a backing chain is handed in (the engine's
// chainBlockStatus), so this layer depends on engine types only.
import type { BlockDevice } from '../../engine/device.js';

/** One image a server offers, under a name clients ask for ('' is the default export). */
export interface NbdExport {
  name: string;
  /** Shown by `nbdinfo --list` and NBD_INFO_DESCRIPTION (default: none). */
  description?: string;
  device: BlockDevice;
}

/** TLS for an NBD server (qemu-nbd --tls-creds): certificates, optionally PSK. */
export interface TlsSettings {
  /** Secure context options for node:tls (key, cert, ca, PSK callback…). */
  context: import('node:tls').SecureContextOptions;
  /** Require and verify a client certificate signed by the CA. */
  verifyPeer: boolean;
  /** PSK identities → keys (QEMU's keys.psk): a client that knows one is authenticated by it. */
  psk: Map<string, Buffer> | null;
}

export interface ConnectionSettings {
  exports: NbdExport[];
  /** The export for the empty name "": the first one. */
  readOnly: boolean;
  /** Advertise NBD_FLAG_CAN_MULTI_CONN (several clients share one device instance). */
  multiConn: boolean;
  tls: TlsSettings | null;
  log: (line: string) => void;
  /** Per connection: requests and payload/reply bytes in flight before we stop reading. */
  maxRequestsInFlight: number;
  maxBytesInFlight: number;
  /** A client that has not reached transmission by then is dropped. */
  handshakeTimeoutMs: number;
}

export function findExport(settings: ConnectionSettings, name: string): NbdExport | undefined {
  if (name === '') return settings.exports[0];
  return settings.exports.find((e) => e.name === name);
}
