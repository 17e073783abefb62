// The handshake phase of one connection (fixed newstyle): greeting, client flags, then one
// handler per option until EXPORT_NAME or a successful GO. STARTTLS forgets every state
// negotiated before it and discards whatever the client pipelined in plaintext.
import type { Duplex } from 'node:stream';
import { DEFAULT_CIPHERS, createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import {
  CONTEXT_ALLOCATION_DEPTH, CONTEXT_BASE_ALLOCATION, KNOWN_CLIENT_FLAGS, NBD_FLAG_C_NO_ZEROES, NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_CACHE, NBD_FLAG_SEND_DF, NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT, NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK,
  NBD_REP_ERR_INVALID, NBD_REP_ERR_POLICY, NBD_REP_ERR_TLS_REQD, NBD_REP_ERR_TOO_BIG, NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP, NBD_REP_META_CONTEXT, NBD_REP_SERVER, nameOfOption,
} from '../protocol/constants.js';
import {
  CLIENT_FLAGS_BYTES, OPTION_HEADER_BYTES, decodeClientFlags, decodeOptionHeader, encodeExportNameReply,
  encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeInfoText, encodeMetaContext, encodeOptionError,
  encodeOptionReply, encodeServerEntry, parseExportRequest, parseMetaContextRequest,
} from '../protocol/handshake.js';
import { ByteReader } from './byte-reader.js';
import { type ConnectionSettings, type NbdExport, type TlsSettings, findExport } from './exports.js';

/** Option payloads larger than this are refused unread: the largest legal one is a few queries of 4 KiB. */
export const MAX_OPTION_BYTES = 64 * 1024;
const MAX_QUERIES = 16;

const PSK_CIPHERS = 'ECDHE-PSK-CHACHA20-POLY1305:ECDHE-PSK-AES128-CBC-SHA256:PSK-AES128-GCM-SHA256';

export const CONTEXT_IDS: Record<string, number> = { [CONTEXT_BASE_ALLOCATION]: 1, [CONTEXT_ALLOCATION_DEPTH]: 2 };

export interface Negotiated {
  socket: Duplex;
  reader: ByteReader;
  export: NbdExport;
  structuredReplies: boolean;
  /** Selected metadata contexts (by id), for the export entered. */
  contexts: Map<number, string>;
  transmissionFlags: number;
}

interface State {
  socket: Duplex;
  reader: ByteReader;
  tlsDone: boolean;
  structured: boolean;
  selected: { exportName: string; contexts: Map<number, string> } | null;
}

/** Runs the handshake; resolves to the negotiated export, or null if the client left or was dropped. */
export async function negotiate(raw: Duplex, settings: ConnectionSettings): Promise<Negotiated | null> {
  const state: State = { socket: raw, reader: new ByteReader(raw), tlsDone: false, structured: false, selected: null };
  raw.write(encodeGreeting());
  const clientFlags = decodeClientFlags(await state.reader.read(CLIENT_FLAGS_BYTES));
  if ((clientFlags & ~KNOWN_CLIENT_FLAGS) !== 0) {
    settings.log(`client sent unknown flags 0x${clientFlags.toString(16)}: dropping it`);
    return null;
  }
  const noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0;
  for (;;) {
    const header = decodeOptionHeader(await state.reader.read(OPTION_HEADER_BYTES));
    if (!header.ok) { settings.log(`client sent a ${header.reason}: dropping it`); return null; }
    const { option, length } = header;
    const reply = (bytes: Uint8Array): void => { state.socket.write(bytes); };
    if (length > MAX_OPTION_BYTES) {
      // Answering after the payload would mean waiting for (up to 4 GiB of) it: refuse at once
      // and end the session, since the stream cannot be resynchronised without reading it.
      if (option !== NBD_OPT_EXPORT_NAME) reply(encodeOptionError(option, NBD_REP_ERR_TOO_BIG, `${nameOfOption(option)} payload of ${length} bytes is too large`));
      settings.log(`client sent a ${length}-byte ${nameOfOption(option)}: dropping it`);
      return null;
    }
    const payload = (await state.reader.read(length)).slice();
    if (settings.tls && !state.tlsDone && option !== NBD_OPT_STARTTLS && option !== NBD_OPT_ABORT) {
      if (option === NBD_OPT_EXPORT_NAME) return null;
      reply(encodeOptionError(option, NBD_REP_ERR_TLS_REQD, 'TLS is required: send NBD_OPT_STARTTLS first'));
      continue;
    }
    switch (option) {
      case NBD_OPT_EXPORT_NAME: {
        const name = new TextDecoder().decode(payload);
        const chosen = payload.length <= 4096 ? findExport(settings, name) : undefined;
        if (!chosen) { settings.log('client asked for an unknown export: dropping it'); return null; }
        const flags = transmissionFlags(settings, state.structured);
        reply(encodeExportNameReply(chosen.device.size, flags, noZeroes));
        return finish(state, settings, chosen, flags);
      }
      case NBD_OPT_ABORT:
        reply(encodeOptionReply(option, NBD_REP_ACK));
        return null;
      case NBD_OPT_LIST:
        if (length !== 0) { reply(encodeOptionError(option, NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data')); break; }
        for (const e of settings.exports) reply(encodeServerEntry(option, NBD_REP_SERVER, e.name, e.description ?? ''));
        reply(encodeOptionReply(option, NBD_REP_ACK));
        break;
      case NBD_OPT_STARTTLS: {
        if (length !== 0) { reply(encodeOptionError(option, NBD_REP_ERR_INVALID, 'NBD_OPT_STARTTLS takes no data')); break; }
        if (!settings.tls) { reply(encodeOptionError(option, NBD_REP_ERR_POLICY, 'this server does not offer TLS')); break; }
        if (state.tlsDone) { reply(encodeOptionError(option, NBD_REP_ERR_INVALID, 'TLS is already active')); break; }
        reply(encodeOptionReply(option, NBD_REP_ACK));
        await startTls(state, settings);
        break;
      }
      case NBD_OPT_INFO:
      case NBD_OPT_GO: {
        const parsed = parseExportRequest(payload);
        if (!parsed.ok) { reply(encodeOptionError(option, NBD_REP_ERR_INVALID, parsed.reason)); break; }
        const chosen = findExport(settings, parsed.value.name);
        if (!chosen) { reply(encodeOptionError(option, NBD_REP_ERR_UNKNOWN, 'no such export')); break; }
        const flags = transmissionFlags(settings, state.structured);
        const sizes = chosen.device.capabilities.blockSizes;
        reply(encodeInfoExport(option, chosen.device.size, flags));
        if (parsed.value.infoRequests.includes(NBD_INFO_NAME)) reply(encodeInfoText(option, NBD_INFO_NAME, chosen.name));
        if (parsed.value.infoRequests.includes(NBD_INFO_DESCRIPTION) && chosen.description) {
          reply(encodeInfoText(option, NBD_INFO_DESCRIPTION, chosen.description));
        }
        reply(encodeInfoBlockSize(option, sizes.minimum, sizes.preferred, sizes.maximum));
        reply(encodeOptionReply(option, NBD_REP_ACK));
        if (option === NBD_OPT_GO) return finish(state, settings, chosen, flags);
        break;
      }
      case NBD_OPT_STRUCTURED_REPLY:
        if (length !== 0) { reply(encodeOptionError(option, NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data')); break; }
        state.structured = true;
        reply(encodeOptionReply(option, NBD_REP_ACK));
        break;
      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT: {
        if (!state.structured) { reply(encodeOptionError(option, NBD_REP_ERR_INVALID, 'negotiate structured replies first')); break; }
        const parsed = parseMetaContextRequest(payload, MAX_QUERIES);
        if (!parsed.ok) { reply(encodeOptionError(option, parsed.reason.includes('queries is more') ? NBD_REP_ERR_TOO_BIG : NBD_REP_ERR_INVALID, parsed.reason)); break; }
        if (!findExport(settings, parsed.value.exportName)) { reply(encodeOptionError(option, NBD_REP_ERR_UNKNOWN, 'no such export')); break; }
        const list = option === NBD_OPT_LIST_META_CONTEXT;
        const matched = matchContexts(parsed.value.queries, list);
        for (const name of matched) reply(encodeMetaContext(option, NBD_REP_META_CONTEXT, CONTEXT_IDS[name]!, name));
        if (!list) state.selected = { exportName: parsed.value.exportName, contexts: new Map(matched.map((n) => [CONTEXT_IDS[n]!, n])) };
        reply(encodeOptionReply(option, NBD_REP_ACK));
        break;
      }
      default:
        reply(encodeOptionError(option, NBD_REP_ERR_UNSUP, `${nameOfOption(option)} is not supported`));
    }
  }
}

/** The contexts a list of queries selects. An empty list lists everything, and selects nothing. */
function matchContexts(queries: string[], list: boolean): string[] {
  const all = [CONTEXT_BASE_ALLOCATION, CONTEXT_ALLOCATION_DEPTH];
  if (queries.length === 0) return list ? all : [];
  const out = new Set<string>();
  for (const q of queries) {
    if (all.includes(q)) out.add(q);
    else if (list && q === 'base:') out.add(CONTEXT_BASE_ALLOCATION);
    else if (list && q === 'qemu:') out.add(CONTEXT_ALLOCATION_DEPTH);
  }
  return all.filter((n) => out.has(n));
}

function transmissionFlags(settings: ConnectionSettings, structured: boolean): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_CACHE;
  if (settings.readOnly) flags |= NBD_FLAG_READ_ONLY;
  else flags |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
  if (structured) flags |= NBD_FLAG_SEND_DF;
  if (settings.multiConn) flags |= NBD_FLAG_CAN_MULTI_CONN;
  return flags;
}

/** Contexts count only if they were selected for the export being entered ("" names the first). */
function finish(state: State, settings: ConnectionSettings, chosen: NbdExport, flags: number): Negotiated {
  const selected = state.selected;
  const sameExport = selected !== null && findExport(settings, selected.exportName) === chosen;
  return {
    socket: state.socket, reader: state.reader, export: chosen, structuredReplies: state.structured,
    contexts: sameExport ? selected.contexts : new Map(), transmissionFlags: flags,
  };
}

/** One node:tls server per TLS configuration; connections are handed to it after STARTTLS. */
const tlsServers = new WeakMap<TlsSettings, TlsServer>();

function tlsServerFor(tls: TlsSettings): TlsServer {
  let server = tlsServers.get(tls);
  if (!server) {
    server = createTlsServer({
      ...tls.context,
      requestCert: tls.verifyPeer,
      rejectUnauthorized: tls.verifyPeer,
      // node:tls serves PSK beside certificates only in TLS 1.2, with the PSK suites first (on
      // TLS 1.3 a server holding a certificate fails GnuTLS's PSK clients: "insufficient
      // credentials"). A matched identity authenticates the client.
      ...(tls.psk ? {
        pskCallback: (_socket: TLSSocket, identity: string) => tls.psk!.get(identity) ?? null,
        maxVersion: 'TLSv1.2' as const,
        // Node's default list ends in !PSK, which would strike the PSK suites out again.
        ciphers: [PSK_CIPHERS, ...DEFAULT_CIPHERS.split(':').filter((c) => c !== '!PSK')].join(':'),
      } : {}),
    });
    server.setMaxListeners(0); // one pair of listeners per connection in its TLS handshake
    tlsServers.set(tls, server);
  }
  return server;
}

async function startTls(state: State, settings: ConnectionSettings): Promise<void> {
  const server = tlsServerFor(settings.tls!);
  state.reader.detach(); // whatever was pipelined in plaintext is discarded
  const raw = state.socket;
  const secure = await new Promise<TLSSocket>((resolve, reject) => {
    const onSecure = (socket: TLSSocket): void => {
      if (parentOf(socket) !== raw) return; // another connection's handshake on the shared server
      cleanup();
      resolve(socket);
    };
    const onError = (err: Error, socket: TLSSocket): void => {
      if (parentOf(socket) !== raw) return;
      cleanup();
      reject(err);
    };
    const onClose = (): void => { cleanup(); reject(new Error('connection closed during the TLS handshake')); };
    const cleanup = (): void => {
      server.off('secureConnection', onSecure);
      server.off('tlsClientError', onError);
      raw.off('close', onClose);
    };
    server.on('secureConnection', onSecure);
    server.on('tlsClientError', onError);
    raw.once('close', onClose);
    server.emit('connection', raw);
  });
  secure.on('error', () => undefined); // reported through the reader
  state.socket = secure;
  state.reader = new ByteReader(secure);
  state.tlsDone = true;
  state.structured = false;
  state.selected = null;
}

/** The plain socket a server-side TLSSocket wraps (node:tls keeps it as _parent). */
function parentOf(socket: TLSSocket): unknown {
  return (socket as unknown as { _parent?: unknown })._parent;
}
