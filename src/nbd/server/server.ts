// The NBD server: listens (unix socket, TCP, or an inherited socket), runs each connection
// through the handshake and transmission, limits how many clients are served at once, and
// stops cleanly: no new clients, in-flight requests answered, connections closed (node:net
// removes a unix socket it created when it closes). It serves BlockDevices it is given and
// never closes them: their owner does, after stop().
import { createServer, type Server, type Socket } from 'node:net';
import { ConnectionClosed } from './byte-reader.js';
import { type ConnectionSettings, type NbdExport, type TlsSettings } from './exports.js';
import { UsageError } from '../../base/errors.js';
import { negotiate } from './handshake.js';
import { StopSignal, serveTransmission } from './transmission.js';

/** Where an NBD server listens. */
export type ListenOn =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number }
  /** An already listening socket handed over by the service manager (socket activation). */
  | { kind: 'fd'; fd: number };

/** What to serve, where, and with which limits (qemu-nbd's options where they overlap). */
export interface NbdServerOptions {
  exports: NbdExport[];
  listen: ListenOn;
  readOnly?: boolean;
  /** Clients served at once (qemu-nbd -e); more are turned away. With more than one, multi-conn is advertised. */
  maxClients?: number;
  tls?: TlsSettings | null;
  /** Where the server reports failed requests and connections (default: nowhere). */
  log?: (line: string) => void;
  maxRequestsInFlight?: number;
  maxBytesInFlight?: number;
  handshakeTimeoutMs?: number;
  /** Called each time the number of clients drops to zero after at least one came. */
  onIdle?: () => void;
}

/** A running NBD server. */
export interface NbdServer {
  /** Where it listens, for people: "unix:/path" or "127.0.0.1:10809". */
  readonly address: string;
  readonly port: number | null;
  readonly clientCount: number;
  /** Stop accepting, let in-flight requests finish (newcomers get ESHUTDOWN), close connections. */
  stop(): Promise<void>;
}

export async function startNbdServer(options: NbdServerOptions): Promise<NbdServer> {
  if (options.exports.length === 0) throw new UsageError('an NBD server needs at least one export');
  const maxClients = options.maxClients ?? 1;
  const settings: ConnectionSettings = {
    exports: options.exports,
    readOnly: options.readOnly ?? options.exports.every((e) => e.device.readOnly),
    multiConn: maxClients > 1,
    tls: options.tls ?? null,
    log: options.log ?? (() => undefined),
    maxRequestsInFlight: options.maxRequestsInFlight ?? 64,
    maxBytesInFlight: options.maxBytesInFlight ?? 128 * 1024 * 1024,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
  };
  const signal = new StopSignal();
  const connections = new Set<Promise<void>>();
  const sockets = new Set<Socket>();
  let served = 0;

  // allowHalfOpen: a client that ends its side of the stream after sending requests still gets
  // their replies (node would otherwise end ours at once and drop every reply still in flight).
  // The connection is closed once they are written (serveConnection).
  const server: Server = createServer({ pauseOnConnect: false, allowHalfOpen: true }, (socket) => {
    if (signal.stopping || sockets.size >= maxClients) {
      settings.log(`turning a client away: ${signal.stopping ? 'shutting down' : `already serving ${maxClients}`}`);
      socket.destroy();
      return;
    }
    sockets.add(socket);
    served++;
    socket.setNoDelay?.(true);
    const done = serveConnection(socket, settings, signal).finally(() => {
      sockets.delete(socket);
      connections.delete(done);
      if (sockets.size === 0 && served > 0 && !signal.stopping) options.onIdle?.();
    });
    connections.add(done);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const listen = options.listen;
    if (listen.kind === 'unix') server.listen(listen.path, resolve);
    else if (listen.kind === 'tcp') server.listen(listen.port, listen.host, resolve);
    else server.listen({ fd: listen.fd }, resolve);
  });
  server.on('error', (err) => settings.log(`listener failed: ${err.message}`));

  const bound = server.address();
  const port = bound !== null && typeof bound === 'object' ? bound.port : null;
  const address = options.listen.kind === 'unix' ? `unix:${options.listen.path}`
    : options.listen.kind === 'tcp' ? `${options.listen.host.includes(':') ? `[${options.listen.host}]` : options.listen.host}:${port}`
      : typeof bound === 'string' ? `unix:${bound}` : `inherited socket${port !== null ? ` (port ${port})` : ''}`;

  let stopping: Promise<void> | null = null;
  return {
    address,
    port,
    get clientCount() { return sockets.size; },
    stop() {
      stopping ??= (async () => {
        signal.stop();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        // Connections still in the handshake have nothing in flight: end them now.
        await Promise.allSettled([...connections]);
      })();
      return stopping;
    },
  };
}

/** One client from connect to close. Never rejects: a client's failure is logged and ends only that client. */
async function serveConnection(socket: Socket, settings: ConnectionSettings, signal: StopSignal): Promise<void> {
  socket.on('error', () => undefined); // reported through the reader; never an unhandled event
  let handshakeTimer: NodeJS.Timeout | null = setTimeout(() => {
    settings.log('client did not finish the handshake in time: dropping it');
    socket.destroy();
  }, settings.handshakeTimeoutMs);
  const stopDuringHandshake = (): void => { if (handshakeTimer) socket.destroy(); };
  // Forgotten when the connection ends: a reaction on the shared stop promise would keep every socket ever served.
  const forgetStop = signal.onStop(stopDuringHandshake);
  try {
    const negotiated = await negotiate(socket, settings);
    clearTimeout(handshakeTimer);
    handshakeTimer = null;
    if (!negotiated) return;
    await serveTransmission(negotiated, settings, signal);
    // Replies are all written; give the client a moment to read them, not forever.
    await new Promise<void>((resolve) => { const t = setTimeout(resolve, 5000); negotiated.socket.end(() => { clearTimeout(t); resolve(); }); });
  } catch (err) {
    if (!(err instanceof ConnectionClosed)) settings.log(`connection failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    forgetStop();
    if (handshakeTimer) clearTimeout(handshakeTimer);
    socket.destroy();
  }
}
