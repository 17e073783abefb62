// An independent NBD client for the server tests, written from the protocol document (the
// NetworkBlockDevice project's doc/proto.md) and deliberately not from src/nbd: a test that
// used our own codec on both ends would agree with itself whatever the wire said.
//
// It is a test instrument, not a polite client. Every step of the fixed-newstyle handshake is
// a separate call that exposes the raw bytes, so a test can send any option header (wrong
// magic, a length that lies, a payload that does not fit the option) and any request header
// (any magic, flags, type, cookie, offset, length, with or without a payload), then read what
// the server answers. Helpers build the usual sequences (LIST, INFO, GO, STRUCTURED_REPLY,
// SET_META_CONTEXT, STARTTLS) on top of those steps.
//
// Two limits keep a misbehaving server from hurting the test run:
//   - every read has a timeout (default 10 s), so a hung server fails the test instead of
//     hanging it; the error names what was awaited and how many bytes had arrived;
//   - the receive buffer is bounded: past `maxBuffered` bytes the socket is paused (TCP
//     backpressure reaches the server), and a length the server declares is checked against
//     `maxPayload` before anything is read or allocated.
// Not reading replies at all (to test the server's own backpressure) is allowed: the socket
// then stays paused and nothing accumulates here beyond the bound.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';

// ---- constants, under the document's names ---------------------------------------------------

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags. */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

/** Transmission flags. */
export const TX = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

const ERR_BIT = 0x80000000;
export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: ERR_BIT + 1,
  ERR_POLICY: ERR_BIT + 2,
  ERR_INVALID: ERR_BIT + 3,
  ERR_PLATFORM: ERR_BIT + 4,
  ERR_TLS_REQD: ERR_BIT + 5,
  ERR_UNKNOWN: ERR_BIT + 6,
  ERR_SHUTDOWN: ERR_BIT + 7,
  ERR_BLOCK_SIZE_REQD: ERR_BIT + 8,
  ERR_TOO_BIG: ERR_BIT + 9,
  ERR_EXT_HEADER_REQD: ERR_BIT + 10,
} as const;

export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  RESIZE: 8,
} as const;

export const CMD_FLAG = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4 } as const;

export const NBD_REPLY_FLAG_DONE = 1;
export const REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8000 + 1,
  ERROR_OFFSET: 0x8000 + 2,
} as const;

export const NBD_ERR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** base:allocation status flags. */
export const NBD_STATE_HOLE = 1;
export const NBD_STATE_ZERO = 2;

function nameIn(table: Record<string, number>, prefix: string, value: number): string {
  for (const [k, v] of Object.entries(table)) if (v === value) return prefix + k;
  return `${prefix}${value} (0x${value.toString(16)})`;
}
export const nameOfOption = (v: number): string => nameIn(OPT, 'NBD_OPT_', v);
export const nameOfReply = (v: number): string => nameIn(REP, 'NBD_REP_', v);
export const nameOfCommand = (v: number): string => nameIn(CMD, 'NBD_CMD_', v);
export const nameOfError = (v: number): string => v === 0 ? 'OK' : nameIn(NBD_ERR, 'NBD_', v);
export const nameOfChunk = (v: number): string => nameIn(REPLY_TYPE, 'NBD_REPLY_TYPE_', v);

// ---- errors ------------------------------------------------------------------------------------

/** The server closed the connection (or the socket failed) before the awaited bytes arrived. */
export class NbdEofError extends Error {
  constructor(readonly what: string, readonly wanted: number, readonly got: number, override readonly cause?: Error) {
    super(`connection closed while reading ${what}: wanted ${wanted} bytes, ${got} arrived${cause ? ` (${cause.message})` : ''}`);
  }
}

/** The awaited bytes did not arrive in time. */
export class NbdTimeoutError extends Error {
  constructor(readonly what: string, readonly wanted: number, readonly got: number, readonly ms: number) {
    super(`timed out after ${ms} ms reading ${what}: wanted ${wanted} bytes, ${got} arrived`);
  }
}

/** The server sent something the framing cannot be continued after. */
export class NbdFramingError extends Error {}

// ---- byte helpers (network byte order) ------------------------------------------------------

export function u16be(v: number): Buffer { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; }
export function u32be(v: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32BE(v >>> 0); return b; }
export function u64be(v: bigint | number): Buffer { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt.asUintN(64, BigInt(v))); return b; }
/** A string as the protocol sends it in option data: 32-bit length, then the bytes. */
export function lengthPrefixed(text: string | Buffer): Buffer {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  return Buffer.concat([u32be(bytes.length), bytes]);
}

/** An option header: magic, option, declared length; `data` follows it as given. */
export function optionBytes(option: number, data: Buffer = Buffer.alloc(0), opts: { magic?: bigint; length?: number } = {}): Buffer {
  return Buffer.concat([u64be(opts.magic ?? IHAVEOPT), u32be(option), u32be(opts.length ?? data.length), data]);
}

/** NBD_OPT_INFO / NBD_OPT_GO data: name, then a list of NBD_INFO requests. */
export function infoRequestData(name: string, requests: readonly number[] = []): Buffer {
  return Buffer.concat([lengthPrefixed(name), u16be(requests.length), ...requests.map(u16be)]);
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data: name, count, queries. */
export function metaContextData(name: string, queries: readonly string[]): Buffer {
  return Buffer.concat([lengthPrefixed(name), u32be(queries.length), ...queries.map((q) => lengthPrefixed(q))]);
}

export interface RequestHeader {
  magic?: number;
  flags?: number;
  type: number;
  cookie?: bigint;
  offset?: bigint | number;
  length?: number;
}

/** A 28-byte request header. */
export function requestBytes(h: Required<Omit<RequestHeader, 'magic'>> & { magic?: number }): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE((h.magic ?? NBD_REQUEST_MAGIC) >>> 0, 0);
  b.writeUInt16BE(h.flags & 0xffff, 4);
  b.writeUInt16BE(h.type & 0xffff, 6);
  b.writeBigUInt64BE(BigInt.asUintN(64, h.cookie), 8);
  b.writeBigUInt64BE(BigInt.asUintN(64, BigInt(h.offset)), 16);
  b.writeUInt32BE(h.length >>> 0, 24);
  return b;
}

// ---- the receive side: a bounded inbox with timed reads --------------------------------------

interface Waiter { wanted: number; what: string; resolve(b: Buffer): void; reject(e: Error): void; timer: NodeJS.Timeout }

class Inbox {
  private chunks: Buffer[] = [];
  private size = 0;
  private waiter: Waiter | null = null;
  private closeWaiters: Array<() => void> = [];
  private socket: Socket | null = null;
  eof = false;
  failure: Error | undefined;
  private readonly onData = (d: Buffer): void => this.push(d);
  private readonly onEnd = (): void => this.finish();
  private readonly onClose = (): void => this.finish();
  private readonly onError = (e: Error): void => { this.failure ??= e; this.finish(); };

  constructor(private readonly maxBuffered: number) {}

  attach(socket: Socket): void {
    this.socket = socket;
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    socket.on('error', this.onError);
  }

  /** Stop listening to this socket (before it is wrapped in TLS); what it delivered stays. */
  detach(): Socket {
    const s = this.socket!;
    s.off('data', this.onData);
    s.off('end', this.onEnd);
    s.off('close', this.onClose);
    // Keep an error listener so a late EPIPE on the old socket cannot crash the process.
    s.off('error', this.onError);
    s.on('error', () => {});
    this.socket = null;
    return s;
  }

  get buffered(): number { return this.size; }

  private push(d: Buffer): void {
    this.chunks.push(d);
    this.size += d.length;
    if (this.size >= this.maxBuffered) this.socket?.pause();
    this.serve();
  }

  private finish(): void {
    this.eof = true;
    this.serve();
    for (const w of this.closeWaiters.splice(0)) w();
  }

  private take(n: number): Buffer {
    let out: Buffer;
    if (this.chunks[0]!.length >= n) {
      const first = this.chunks[0]!;
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift(); else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const first = this.chunks[0]!;
        const k = Math.min(first.length, n - at);
        first.copy(out, at, 0, k);
        at += k;
        if (k === first.length) this.chunks.shift(); else this.chunks[0] = first.subarray(k);
      }
    }
    this.size -= n;
    if (this.size < this.maxBuffered && this.socket?.isPaused()) this.socket.resume();
    return out;
  }

  private serve(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.size >= w.wanted) {
      this.waiter = null;
      clearTimeout(w.timer);
      w.resolve(this.take(w.wanted));
    } else if (this.eof) {
      this.waiter = null;
      clearTimeout(w.timer);
      w.reject(new NbdEofError(w.what, w.wanted, this.size, this.failure));
    } else if (this.socket?.isPaused() && this.size < this.maxBuffered) {
      this.socket.resume();
    }
  }

  read(n: number, what: string, timeoutMs: number): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error(`read of ${what} while another read (${this.waiter.what}) is pending`));
    if (n === 0) return Promise.resolve(Buffer.alloc(0));
    if (n > this.maxBuffered) {
      // Reading more than the bound at once would need the socket unpaused past it; read in pieces.
      return this.readLarge(n, what, timeoutMs);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new NbdTimeoutError(what, n, this.size, timeoutMs));
      }, timeoutMs);
      this.waiter = { wanted: n, what, resolve, reject, timer };
      this.serve();
    });
  }

  private async readLarge(n: number, what: string, timeoutMs: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(n);
    for (let at = 0; at < n;) {
      const k = Math.min(this.maxBuffered, n - at);
      (await this.read(k, what, timeoutMs)).copy(out, at);
      at += k;
    }
    return out;
  }

  /** Everything buffered now, without waiting. */
  drain(): Buffer {
    const out = Buffer.concat(this.chunks);
    this.chunks = [];
    this.size = 0;
    if (this.socket?.isPaused()) this.socket.resume();
    return out;
  }

  /** Resolves true when the peer has closed (discarding anything it sends meanwhile), false on timeout. */
  waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.eof) return Promise.resolve(true);
    return new Promise((resolve) => {
      const discard = setInterval(() => { this.drain(); }, 20);
      const done = (closed: boolean): void => { clearInterval(discard); clearTimeout(timer); resolve(closed); };
      const timer = setTimeout(() => { this.closeWaiters = this.closeWaiters.filter((w) => w !== onClose); done(false); }, timeoutMs);
      const onClose = (): void => done(true);
      this.closeWaiters.push(onClose);
      this.drain();
    });
  }
}

// ---- replies -------------------------------------------------------------------------------------

export interface Greeting {
  magic: bigint;
  optionMagic: bigint;
  handshakeFlags: number;
  raw: Buffer;
}

export interface OptionReply {
  magic: bigint;
  option: number;
  type: number;
  length: number;
  data: Buffer;
  raw: Buffer;
}

export interface ExportInfo {
  size?: bigint;
  flags?: number;
  name?: string;
  description?: string;
  blockSize?: { minimum: number; preferred: number; maximum: number };
  /** NBD_REP_INFO items of types this client does not know, as sent. */
  otherInfos: Array<{ type: number; data: Buffer }>;
}

export interface GoResult extends ExportInfo {
  /** The final reply type: NBD_REP_ACK on success, an error type otherwise. */
  final: number;
  /** The final reply's data (an error message, for an error). */
  finalData: Buffer;
  replies: OptionReply[];
}

export interface Extent { length: number; flags: number }

export interface SimpleReply { kind: 'simple'; error: number; cookie: bigint; data?: Buffer }
export interface ChunkReply {
  kind: 'chunk';
  flags: number;
  type: number;
  cookie: bigint;
  length: number;
  payload: Buffer;
}
export type Reply = SimpleReply | ChunkReply;

/** Everything the server answered to one request, judged against what the request asked. */
export interface CommandResult {
  cookie: bigint;
  /** The first error reported (simple reply error or error chunk), 0 when none. */
  error: number;
  /** Messages of error chunks. */
  messages: string[];
  /** Offsets of NBD_REPLY_TYPE_ERROR_OFFSET chunks. */
  errorOffsets: bigint[];
  /** For a read: the data, holes as zeroes; bytes no chunk covered are zero too (see `covered`). */
  data?: Buffer;
  /** For a structured read: how many bytes content chunks covered. */
  covered?: number;
  /** For a structured read: the content chunks in arrival order. */
  content?: Array<{ type: 'data' | 'hole'; offset: bigint; length: number }>;
  /** For block status: the extents per context id. */
  extents: Map<number, Extent[]>;
  replies: Reply[];
  /** Ways the answer broke the protocol (chunk outside the request, overlap, missing data, ...). */
  violations: string[];
}

export interface ClientOptions {
  /** Timeout for each read, in ms (default 10,000). */
  timeoutMs?: number;
  /** Bytes buffered before the socket is paused (default 64 MiB). */
  maxBuffered?: number;
  /** The largest length the server may declare for one option reply or reply chunk (default 64 MiB + 4 KiB). */
  maxPayload?: number;
}

interface Sent { type: number; flags: number; offset: bigint; length: number; structured: boolean }

// ---- the client ----------------------------------------------------------------------------------

export class NbdRawClient {
  socket: Socket;
  readonly timeoutMs: number;
  readonly maxPayload: number;
  private readonly inbox: Inbox;
  /** Set once NBD_OPT_STRUCTURED_REPLY was acknowledged (and cleared by STARTTLS). */
  structured = false;
  /** The contexts the last NBD_OPT_SET_META_CONTEXT selected, name → id. */
  contexts = new Map<string, number>();
  /** Set once NBD_OPT_GO (or EXPORT_NAME) entered transmission. */
  export: ExportInfo | null = null;
  private nextCookie = 1n;
  private readonly sent = new Map<bigint, Sent>();
  /** Replies that arrived for other cookies while collecting one. */
  private readonly parked: Reply[] = [];

  private constructor(socket: Socket, opts: ClientOptions) {
    this.socket = socket;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.maxPayload = opts.maxPayload ?? 64 * 1024 * 1024 + 4096;
    this.inbox = new Inbox(opts.maxBuffered ?? 64 * 1024 * 1024);
    this.inbox.attach(socket);
  }

  /** Connect to a unix socket. */
  static unix(path: string, opts: ClientOptions = {}): Promise<NbdRawClient> {
    return NbdRawClient.connecting(netConnect({ path }), `unix:${path}`, opts);
  }

  /** Connect over TCP (127.0.0.1 unless told otherwise). */
  static tcp(port: number, host = '127.0.0.1', opts: ClientOptions = {}): Promise<NbdRawClient> {
    return NbdRawClient.connecting(netConnect({ port, host }), `${host}:${port}`, opts);
  }

  /** Use a socket that is already connected (a TLS socket from the start, for instance). */
  static over(socket: Socket, opts: ClientOptions = {}): NbdRawClient {
    return new NbdRawClient(socket, opts);
  }

  private static connecting(socket: Socket, where: string, opts: ClientOptions): Promise<NbdRawClient> {
    const ms = opts.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { socket.destroy(); reject(new Error(`connect to ${where} timed out after ${ms} ms`)); }, ms);
      socket.once('error', (e) => { clearTimeout(timer); reject(new Error(`connect to ${where}: ${e.message}`)); });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new NbdRawClient(socket, opts));
      });
    });
  }

  // ---- raw bytes -------------------------------------------------------------------------------

  /** Write bytes; resolves once handed to the kernel (or rejects on a socket error or timeout). */
  send(bytes: Buffer, timeoutMs = this.timeoutMs): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed || !this.socket.writable) { reject(new NbdEofError('(socket closed before a write)', 0, 0)); return; }
      const timer = setTimeout(() => reject(new NbdTimeoutError(`write of ${bytes.length} bytes (server not reading)`, bytes.length, 0, timeoutMs)), timeoutMs);
      this.socket.write(bytes, (err) => { clearTimeout(timer); if (err) reject(err); else resolve(); });
    });
  }

  /** Queue bytes without waiting for them to leave; returns false when the socket buffer is full. */
  sendNoWait(bytes: Buffer): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    return this.socket.write(bytes, () => {});
  }

  /** Read exactly n bytes (timed). */
  readBytes(n: number, what = `${n} bytes`, timeoutMs = this.timeoutMs): Promise<Buffer> {
    return this.inbox.read(n, what, timeoutMs);
  }

  /** Bytes received and not yet read. */
  get buffered(): number { return this.inbox.buffered; }

  /** True when the server has closed its side. */
  get eof(): boolean { return this.inbox.eof; }

  /** Wait for the server to close the connection, discarding anything it sends meanwhile. */
  closedByServer(timeoutMs = this.timeoutMs): Promise<boolean> {
    return this.inbox.waitClosed(timeoutMs);
  }

  /** Close our side gracefully (FIN) and stop. */
  end(): void { this.socket.end(); }

  /** Drop the connection at once. */
  destroy(): void { this.socket.destroy(); }

  // ---- handshake, step by step ---------------------------------------------------------------

  /** S: NBDMAGIC, IHAVEOPT, 16-bit handshake flags. */
  async readGreeting(): Promise<Greeting> {
    const raw = await this.readBytes(18, 'the greeting');
    return { magic: raw.readBigUInt64BE(0), optionMagic: raw.readBigUInt64BE(8), handshakeFlags: raw.readUInt16BE(16), raw };
  }

  /** C: 32-bit client flags. */
  sendClientFlags(flags: number): Promise<void> {
    return this.send(u32be(flags));
  }

  /** Greeting checked, then client flags (fixed newstyle, and no zeroes when offered). */
  async start(clientFlags?: number): Promise<Greeting> {
    const g = await this.readGreeting();
    if (g.magic !== NBDMAGIC || g.optionMagic !== IHAVEOPT) {
      throw new NbdFramingError(`not a newstyle greeting: ${g.raw.toString('hex')}`);
    }
    const flags = clientFlags ?? (NBD_FLAG_C_FIXED_NEWSTYLE | (g.handshakeFlags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0));
    await this.sendClientFlags(flags);
    return g;
  }

  /** Send an option; `opts.length` may lie about the data, `opts.magic` may be wrong. */
  sendOption(option: number, data: Buffer = Buffer.alloc(0), opts: { magic?: bigint; length?: number } = {}): Promise<void> {
    return this.send(optionBytes(option, data, opts));
  }

  /** S: one option reply (magic, option, type, length, data); the length is capped before reading. */
  async readOptionReply(): Promise<OptionReply> {
    const head = await this.readBytes(20, 'an option reply header');
    const magic = head.readBigUInt64BE(0);
    if (magic !== OPTION_REPLY_MAGIC) throw new NbdFramingError(`option reply magic 0x${magic.toString(16)}: ${head.toString('hex')}`);
    const length = head.readUInt32BE(16);
    if (length > this.maxPayload) throw new NbdFramingError(`option reply declares ${length} bytes of data (cap ${this.maxPayload})`);
    const data = await this.readBytes(length, `option reply data (${length} bytes)`);
    return { magic, option: head.readUInt32BE(8), type: head.readUInt32BE(12), length, data, raw: Buffer.concat([head, data]) };
  }

  /** Option replies up to and including the final one (anything but SERVER, INFO, META_CONTEXT). */
  async readOptionReplies(): Promise<OptionReply[]> {
    const replies: OptionReply[] = [];
    for (let i = 0; ; i++) {
      if (i > 100_000) throw new NbdFramingError('more than 100,000 replies to one option');
      const r = await this.readOptionReply();
      replies.push(r);
      if (r.type !== REP.SERVER && r.type !== REP.INFO && r.type !== REP.META_CONTEXT) return replies;
    }
  }

  /** Send an option and read all its replies. */
  async option(option: number, data: Buffer = Buffer.alloc(0)): Promise<OptionReply[]> {
    await this.sendOption(option, data);
    return this.readOptionReplies();
  }

  /** NBD_OPT_LIST: the export names and descriptions, and the final reply type. */
  async list(): Promise<{ exports: Array<{ name: string; description: string }>; final: number; replies: OptionReply[] }> {
    const replies = await this.option(OPT.LIST);
    const exports = replies.filter((r) => r.type === REP.SERVER).map((r) => {
      const n = r.data.readUInt32BE(0);
      return { name: r.data.subarray(4, 4 + n).toString('utf8'), description: r.data.subarray(4 + n).toString('utf8') };
    });
    return { exports, final: replies[replies.length - 1]!.type, replies };
  }

  /** NBD_OPT_INFO. */
  info(name: string, requests: readonly number[] = [INFO.BLOCK_SIZE, INFO.NAME, INFO.DESCRIPTION]): Promise<GoResult> {
    return this.infoOrGo(OPT.INFO, name, requests);
  }

  /** NBD_OPT_GO; on NBD_REP_ACK the connection is in transmission. */
  async go(name: string, requests: readonly number[] = [INFO.BLOCK_SIZE, INFO.NAME, INFO.DESCRIPTION]): Promise<GoResult> {
    const r = await this.infoOrGo(OPT.GO, name, requests);
    if (r.final === REP.ACK) this.export = r;
    return r;
  }

  private async infoOrGo(option: number, name: string, requests: readonly number[]): Promise<GoResult> {
    const replies = await this.option(option, infoRequestData(name, requests));
    return { ...parseInfos(replies), final: replies[replies.length - 1]!.type, finalData: replies[replies.length - 1]!.data, replies };
  }

  /** NBD_OPT_STRUCTURED_REPLY; returns the reply type. */
  async structuredReply(): Promise<number> {
    const replies = await this.option(OPT.STRUCTURED_REPLY);
    const t = replies[replies.length - 1]!.type;
    if (t === REP.ACK) this.structured = true;
    return t;
  }

  /** NBD_OPT_SET_META_CONTEXT: the contexts selected (name → id) and the final reply type. */
  async setMetaContext(name: string, queries: readonly string[]): Promise<{ contexts: Map<string, number>; final: number; replies: OptionReply[] }> {
    const replies = await this.option(OPT.SET_META_CONTEXT, metaContextData(name, queries));
    const contexts = metaContexts(replies);
    const final = replies[replies.length - 1]!.type;
    this.contexts = final === REP.ACK ? contexts : new Map();
    return { contexts, final, replies };
  }

  /** NBD_OPT_LIST_META_CONTEXT. */
  async listMetaContext(name: string, queries: readonly string[]): Promise<{ contexts: Map<string, number>; final: number; replies: OptionReply[] }> {
    const replies = await this.option(OPT.LIST_META_CONTEXT, metaContextData(name, queries));
    return { contexts: metaContexts(replies), final: replies[replies.length - 1]!.type, replies };
  }

  /** NBD_OPT_ABORT: the reply (if the server sends one before closing). */
  async abort(): Promise<OptionReply | null> {
    await this.sendOption(OPT.ABORT);
    try { return await this.readOptionReply(); } catch (e) { if (e instanceof NbdEofError) return null; throw e; }
  }

  /** NBD_OPT_EXPORT_NAME: size and flags (the session is over if the server refuses). */
  async exportName(name: string, noZeroes: boolean): Promise<{ size: bigint; flags: number }> {
    await this.sendOption(OPT.EXPORT_NAME, Buffer.from(name, 'utf8'));
    const b = await this.readBytes(noZeroes ? 10 : 134, 'the NBD_OPT_EXPORT_NAME reply');
    const r = { size: b.readBigUInt64BE(0), flags: b.readUInt16BE(8) };
    this.export = { ...r, otherInfos: [] };
    return r;
  }

  /**
   * NBD_OPT_STARTTLS; on NBD_REP_ACK the socket is wrapped in TLS with `tls` options (the
   * handshake completes before this returns). Negotiated state is forgotten, as the document
   * requires of both sides.
   */
  async startTls(tls: ConnectionOptions): Promise<OptionReply> {
    const replies = await this.option(OPT.STARTTLS);
    const r = replies[replies.length - 1]!;
    if (r.type !== REP.ACK) return r;
    await this.upgrade(tls);
    return r;
  }

  /** Wrap the current socket in TLS now (after an ACK read by hand, say). */
  async upgrade(tls: ConnectionOptions): Promise<void> {
    const plain = this.inbox.detach();
    const secure: TLSSocket = tlsConnect({ ...tls, socket: plain });
    this.socket = secure;
    this.inbox.attach(secure);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { secure.destroy(); reject(new Error(`TLS handshake timed out after ${this.timeoutMs} ms`)); }, this.timeoutMs);
      const onError = (e: Error): void => { clearTimeout(timer); reject(e); };
      secure.once('secureConnect', () => { clearTimeout(timer); secure.removeListener('error', onError); resolve(); });
      secure.once('error', onError);
      secure.once('close', () => { clearTimeout(timer); reject(new NbdEofError('the TLS handshake', 0, 0)); });
    });
    this.structured = false;
    this.contexts = new Map();
  }

  /**
   * The usual negotiation: greeting, flags, optionally STARTTLS, STRUCTURED_REPLY,
   * SET_META_CONTEXT, then GO. Throws if any step fails.
   */
  async negotiate(opts: { name?: string; structured?: boolean; contexts?: readonly string[]; tls?: ConnectionOptions; infos?: readonly number[] } = {}): Promise<GoResult> {
    const name = opts.name ?? '';
    await this.start();
    if (opts.tls) {
      const r = await this.startTls(opts.tls);
      if (r.type !== REP.ACK) throw new Error(`STARTTLS answered ${nameOfReply(r.type)}`);
    }
    if (opts.structured ?? true) {
      const t = await this.structuredReply();
      if (t !== REP.ACK) throw new Error(`STRUCTURED_REPLY answered ${nameOfReply(t)}`);
    }
    if (opts.contexts && opts.contexts.length > 0) {
      const m = await this.setMetaContext(name, opts.contexts);
      if (m.final !== REP.ACK) throw new Error(`SET_META_CONTEXT answered ${nameOfReply(m.final)}`);
    }
    const go = await this.go(name, opts.infos);
    if (go.final !== REP.ACK) throw new Error(`GO '${name}' answered ${nameOfReply(go.final)}: ${go.finalData.toString('utf8')}`);
    return go;
  }

  // ---- transmission ----------------------------------------------------------------------------

  /** A fresh cookie. */
  cookie(): bigint { return this.nextCookie++; }

  /**
   * Send a request with any header fields; `payload` (if given) follows the header as is,
   * whatever `length` says. Returns the cookie. `wait: false` queues without awaiting the write.
   */
  async request(h: RequestHeader & { payload?: Buffer; wait?: boolean }): Promise<bigint> {
    const cookie = h.cookie ?? this.cookie();
    const length = h.length ?? h.payload?.length ?? 0;
    const offset = BigInt(h.offset ?? 0);
    const header = requestBytes({ magic: h.magic, flags: h.flags ?? 0, type: h.type, cookie, offset, length });
    this.sent.set(cookie, { type: h.type, flags: h.flags ?? 0, offset, length, structured: this.structured });
    const bytes = h.payload ? Buffer.concat([header, h.payload]) : header;
    if (h.wait === false) this.sendNoWait(bytes); else await this.send(bytes);
    return cookie;
  }

  /**
   * One reply message: a simple reply (with its data when it answers a READ sent while
   * structured replies were off and reports no error) or one structured chunk.
   */
  async readReply(): Promise<Reply> {
    const parked = this.parked.shift();
    if (parked) return parked;
    return this.readReplyFromWire();
  }

  private async readReplyFromWire(): Promise<Reply> {
    const magicBytes = await this.readBytes(4, 'a reply magic');
    const magic = magicBytes.readUInt32BE(0);
    if (magic === NBD_SIMPLE_REPLY_MAGIC) {
      const rest = await this.readBytes(12, 'a simple reply');
      const error = rest.readUInt32BE(0);
      const cookie = rest.readBigUInt64BE(4);
      const sent = this.sent.get(cookie);
      let data: Buffer | undefined;
      if (sent && sent.type === CMD.READ && !sent.structured && error === 0) {
        if (sent.length > this.maxPayload) throw new NbdFramingError(`simple read reply of ${sent.length} bytes (cap ${this.maxPayload})`);
        data = await this.readBytes(sent.length, `simple read data (${sent.length} bytes)`);
      }
      return { kind: 'simple', error, cookie, data };
    }
    if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
      const head = await this.readBytes(16, 'a structured reply chunk header');
      const length = head.readUInt32BE(12);
      if (length > this.maxPayload) throw new NbdFramingError(`structured chunk declares ${length} bytes (cap ${this.maxPayload})`);
      const payload = await this.readBytes(length, `a structured chunk payload (${length} bytes)`);
      return { kind: 'chunk', flags: head.readUInt16BE(0), type: head.readUInt16BE(2), cookie: head.readBigUInt64BE(4), length, payload };
    }
    throw new NbdFramingError(`reply magic 0x${magic.toString(16)}`);
  }

  /** Read replies until the one for `cookie` is complete (others are kept for later), then judge it. */
  async collect(cookie: bigint): Promise<CommandResult> {
    const sent = this.sent.get(cookie);
    const replies: Reply[] = [];
    for (let i = 0; ; i++) {
      if (i > (1 << 22)) throw new NbdFramingError('more than 4 Mi chunks in one reply');
      const idx = this.parked.findIndex((r) => r.cookie === cookie);
      const r = idx >= 0 ? this.parked.splice(idx, 1)[0]! : await this.readReplyFromWire();
      if (r.cookie !== cookie) {
        if (this.parked.length > 1_000_000) throw new NbdFramingError('more than a million replies parked');
        this.parked.push(r);
        continue;
      }
      replies.push(r);
      if (r.kind === 'simple' || (r.flags & NBD_REPLY_FLAG_DONE) !== 0) break;
    }
    this.sent.delete(cookie);
    return judge(cookie, sent, replies);
  }

  /** Send and collect. */
  async command(h: RequestHeader & { payload?: Buffer }): Promise<CommandResult> {
    const cookie = await this.request(h);
    return this.collect(cookie);
  }

  read(offset: number | bigint, length: number, flags = 0): Promise<CommandResult> {
    return this.command({ type: CMD.READ, flags, offset, length });
  }

  write(offset: number | bigint, data: Buffer, flags = 0): Promise<CommandResult> {
    return this.command({ type: CMD.WRITE, flags, offset, length: data.length, payload: data });
  }

  flush(flags = 0): Promise<CommandResult> { return this.command({ type: CMD.FLUSH, flags }); }
  trim(offset: number | bigint, length: number, flags = 0): Promise<CommandResult> { return this.command({ type: CMD.TRIM, flags, offset, length }); }
  cache(offset: number | bigint, length: number, flags = 0): Promise<CommandResult> { return this.command({ type: CMD.CACHE, flags, offset, length }); }
  writeZeroes(offset: number | bigint, length: number, flags = 0): Promise<CommandResult> { return this.command({ type: CMD.WRITE_ZEROES, flags, offset, length }); }
  blockStatus(offset: number | bigint, length: number, flags = 0): Promise<CommandResult> { return this.command({ type: CMD.BLOCK_STATUS, flags, offset, length }); }

  /** NBD_CMD_DISC, then wait for the server to close (true if it did in time). */
  async disconnect(timeoutMs = this.timeoutMs): Promise<boolean> {
    await this.request({ type: CMD.DISC });
    const closed = await this.closedByServer(timeoutMs);
    this.destroy();
    return closed;
  }
}

// ---- parsing and judging ----------------------------------------------------------------------

function parseInfos(replies: readonly OptionReply[]): ExportInfo {
  const info: ExportInfo = { otherInfos: [] };
  for (const r of replies) {
    if (r.type !== REP.INFO || r.data.length < 2) continue;
    const type = r.data.readUInt16BE(0);
    const d = r.data.subarray(2);
    if (type === INFO.EXPORT && d.length === 10) { info.size = d.readBigUInt64BE(0); info.flags = d.readUInt16BE(8); }
    else if (type === INFO.NAME) info.name = d.toString('utf8');
    else if (type === INFO.DESCRIPTION) info.description = d.toString('utf8');
    else if (type === INFO.BLOCK_SIZE && d.length === 12) info.blockSize = { minimum: d.readUInt32BE(0), preferred: d.readUInt32BE(4), maximum: d.readUInt32BE(8) };
    else info.otherInfos.push({ type, data: d });
  }
  return info;
}

function metaContexts(replies: readonly OptionReply[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of replies) {
    if (r.type === REP.META_CONTEXT && r.data.length >= 4) m.set(r.data.subarray(4).toString('utf8'), r.data.readUInt32BE(0));
  }
  return m;
}

function judge(cookie: bigint, sent: Sent | undefined, replies: Reply[]): CommandResult {
  const result: CommandResult = { cookie, error: 0, messages: [], errorOffsets: [], extents: new Map(), replies, violations: [] };
  const bad = (s: string): void => { result.violations.push(s); };
  const last = replies[replies.length - 1]!;
  if (last.kind === 'simple') {
    if (replies.length > 1) bad('a simple reply after structured chunks for the same cookie');
    result.error = last.error;
    result.data = last.data;
    if (sent?.type === CMD.READ && sent.structured) bad('simple reply to NBD_CMD_READ after structured replies were negotiated');
    return result;
  }
  const start = sent?.offset ?? 0n;
  const end = start + BigInt(sent?.length ?? 0);
  const isRead = sent?.type === CMD.READ;
  if (isRead && sent) { result.data = Buffer.alloc(sent.length); result.covered = 0; result.content = []; }
  const ranges: Array<[bigint, bigint]> = [];
  const claim = (off: bigint, len: number, what: string): boolean => {
    if (len === 0) { bad(`${what} of length 0`); return false; }
    const e = off + BigInt(len);
    if (off < start || e > end) { bad(`${what} [${off}, ${e}) outside the request [${start}, ${end})`); return false; }
    for (const [a, b] of ranges) if (off < b && a < e) { bad(`${what} [${off}, ${e}) overlaps [${a}, ${b})`); return false; }
    ranges.push([off, e]);
    return true;
  };
  replies.forEach((r, i) => {
    if (r.kind !== 'chunk') { bad('a simple reply among structured chunks'); return; }
    const final = i === replies.length - 1;
    if (!final && (r.flags & NBD_REPLY_FLAG_DONE)) bad('NBD_REPLY_FLAG_DONE before the last chunk');
    const p = r.payload;
    switch (r.type) {
      case REPLY_TYPE.NONE:
        if (r.length !== 0) bad(`NBD_REPLY_TYPE_NONE with length ${r.length}`);
        if (!(r.flags & NBD_REPLY_FLAG_DONE)) bad('NBD_REPLY_TYPE_NONE without NBD_REPLY_FLAG_DONE');
        break;
      case REPLY_TYPE.OFFSET_DATA: {
        if (!isRead) { bad('NBD_REPLY_TYPE_OFFSET_DATA to a command other than READ'); break; }
        if (r.length < 9) { bad(`NBD_REPLY_TYPE_OFFSET_DATA of length ${r.length}`); break; }
        const off = p.readBigUInt64BE(0);
        const len = r.length - 8;
        if (sent && (sent.flags & CMD_FLAG.DF) && result.content!.length > 0) bad('more than one content chunk with NBD_CMD_FLAG_DF');
        result.content!.push({ type: 'data', offset: off, length: len });
        if (claim(off, len, 'data chunk')) { p.copy(result.data!, Number(off - start), 8); result.covered! += len; }
        break;
      }
      case REPLY_TYPE.OFFSET_HOLE: {
        if (!isRead) { bad('NBD_REPLY_TYPE_OFFSET_HOLE to a command other than READ'); break; }
        if (r.length !== 12) { bad(`NBD_REPLY_TYPE_OFFSET_HOLE of length ${r.length}`); break; }
        const off = p.readBigUInt64BE(0);
        const len = p.readUInt32BE(8);
        if (sent && (sent.flags & CMD_FLAG.DF)) bad('a hole chunk with NBD_CMD_FLAG_DF');
        result.content!.push({ type: 'hole', offset: off, length: len });
        if (claim(off, len, 'hole chunk')) result.covered! += len;
        break;
      }
      case REPLY_TYPE.BLOCK_STATUS: {
        if (sent && sent.type !== CMD.BLOCK_STATUS) bad('NBD_REPLY_TYPE_BLOCK_STATUS to a command other than BLOCK_STATUS');
        if (r.length < 12 || (r.length - 4) % 8 !== 0) { bad(`NBD_REPLY_TYPE_BLOCK_STATUS of length ${r.length}`); break; }
        const id = p.readUInt32BE(0);
        if (result.extents.has(id)) bad(`two block status chunks for context ${id}`);
        const list: Extent[] = [];
        for (let at = 4; at < r.length; at += 8) list.push({ length: p.readUInt32BE(at), flags: p.readUInt32BE(at + 4) });
        result.extents.set(id, list);
        if (sent) judgeExtents(list, sent, bad);
        break;
      }
      default:
        if (r.type & 0x8000) {
          if (r.length < 6) { bad(`error chunk of length ${r.length}`); result.error ||= NBD_ERR.EINVAL; break; }
          const error = p.readUInt32BE(0);
          const mlen = p.readUInt16BE(4);
          if (error === 0) bad('error chunk with error 0');
          if (mlen > r.length - 6) bad(`error message length ${mlen} beyond the chunk (${r.length})`);
          if (mlen > 4096) bad(`error message of ${mlen} bytes (over the 4096-byte string limit)`);
          result.error ||= error || NBD_ERR.EINVAL;
          result.messages.push(p.subarray(6, 6 + Math.min(mlen, r.length - 6)).toString('utf8'));
          if (r.type === REPLY_TYPE.ERROR_OFFSET) {
            if (r.length !== 6 + mlen + 8) bad(`NBD_REPLY_TYPE_ERROR_OFFSET of length ${r.length} with a ${mlen}-byte message`);
            else {
              const off = p.readBigUInt64BE(6 + mlen);
              result.errorOffsets.push(off);
              if (off < start || off >= end) bad(`error offset ${off} outside the request [${start}, ${end})`);
            }
          } else if (r.type === REPLY_TYPE.ERROR && r.length !== 6 + mlen) {
            bad(`NBD_REPLY_TYPE_ERROR of length ${r.length} with a ${mlen}-byte message`);
          }
        } else {
          bad(`unknown chunk type ${r.type}`);
        }
    }
  });
  if (!(last.flags & NBD_REPLY_FLAG_DONE)) bad('the last chunk lacks NBD_REPLY_FLAG_DONE');
  if (isRead && sent && result.error === 0 && result.covered !== sent.length) {
    bad(`read of ${sent.length} bytes answered with ${result.covered} bytes of content and no error`);
  }
  return result;
}

function judgeExtents(list: Extent[], sent: Sent, bad: (s: string) => void): void {
  if (list.length === 0) { bad('block status chunk without extents'); return; }
  if (list.length > 1 << 20) bad(`${list.length} extents in one chunk (over 2^20)`);
  let sum = 0;
  list.forEach((e, i) => {
    if (e.length === 0) bad(`extent ${i} of length 0`);
    if (i < list.length - 1) sum += e.length;
  });
  if (sent.flags & CMD_FLAG.REQ_ONE) {
    if (list.length !== 1) bad(`${list.length} extents with NBD_CMD_FLAG_REQ_ONE`);
    if (list[0]!.length > sent.length) bad(`REQ_ONE extent of ${list[0]!.length} bytes, longer than the request (${sent.length})`);
  } else if (list.length > 1 && sum >= sent.length) {
    bad(`the first ${list.length - 1} extents already cover ${sum} bytes of a ${sent.length}-byte request`);
  }
}

/** Extents of one context as (offset, length, flags) from a start offset. */
export function extentsFrom(start: number | bigint, list: readonly Extent[]): Array<{ offset: number; length: number; flags: number }> {
  let at = Number(start);
  return list.map((e) => { const r = { offset: at, length: e.length, flags: e.flags }; at += e.length; return r; });
}
