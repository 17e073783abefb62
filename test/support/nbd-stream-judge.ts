// Judging what an NBD server sent back to one fuzzed client stream, from the protocol
// document alone: the client's bytes are framed as the server must frame them (flags, option
// headers and payloads, 28-byte requests, write payloads, DISC), and the server's bytes must
// parse as the replies those allow, in the right phase: a greeting; for each option, replies
// echoing it and ending with ACK or an error (or the export-name reply, or a close where the
// protocol lets the server drop the client); then simple or structured replies whose handles
// match requests still outstanding, with chunk types, lengths and offsets that fit the request,
// error numbers from the protocol's list, and no bytes after the close or beyond what was
// asked. Every request the server received is answered exactly once before it closes.
const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_MAGIC = 0x67446698;
const STRUCTURED_MAGIC = 0x668e33ef;
const MAX_OPTION_BYTES = 64 * 1024;
const NBD_ERRORS = new Set([1, 5, 12, 22, 28, 75, 95, 108]);
const REP_ACK = 1, REP_SERVER = 2, REP_INFO = 3, REP_META_CONTEXT = 4;
const OPT_EXPORT_NAME = 1, OPT_ABORT = 2, OPT_LIST = 3, OPT_INFO = 6, OPT_GO = 7, OPT_STRUCTURED_REPLY = 8, OPT_LIST_META = 9, OPT_SET_META = 10;
const CMD_READ = 0, CMD_WRITE = 1, CMD_DISC = 2, CMD_BLOCK_STATUS = 7;

class Cursor {
  at = 0;
  constructor(readonly bytes: Buffer) {}
  get left(): number { return this.bytes.length - this.at; }
  take(n: number): Buffer | null {
    if (this.left < n) return null;
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
}

interface Outstanding { type: number; offset: bigint; length: number }

export interface StreamVerdict {
  violations: string[];
  /** How far the exchange got: for the campaign's statistics. */
  reachedTransmission: boolean;
  requestsAnswered: number;
}

/** `exports`: export name → size ("" names the first). */
export function judgeExchange(client: Buffer, server: Buffer, exports: Map<string, number>): StreamVerdict {
  const verdict: StreamVerdict = { violations: [], reachedTransmission: false, requestsAnswered: 0 };
  const bad = (m: string): StreamVerdict => { verdict.violations.push(m); return verdict; };
  const c = new Cursor(client);
  const s = new Cursor(server);
  const expectEnd = (why: string): StreamVerdict => (s.left > 0 ? bad(`${s.left} byte(s) sent after ${why}`) : verdict);

  const greeting = s.take(18);
  if (!greeting) return bad('no complete greeting');
  if (greeting.readBigUInt64BE(0) !== NBDMAGIC || greeting.readBigUInt64BE(8) !== IHAVEOPT) return bad('greeting magic');
  const flagsBytes = c.take(4);
  if (!flagsBytes) return expectEnd('the client left before its flags');
  const clientFlags = flagsBytes.readUInt32BE(0);
  if ((clientFlags & ~3) !== 0) return expectEnd(`unknown client flags 0x${clientFlags.toString(16)}`);
  const noZeroes = (clientFlags & 2) !== 0;

  let structured = false;
  let contexts = new Set<number>();
  for (;;) {
    const header = c.take(16);
    if (!header) return expectEnd('the client left between options');
    if (header.readBigUInt64BE(0) !== IHAVEOPT) return expectEnd('a bad option magic');
    const option = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    if (length > MAX_OPTION_BYTES) {
      if (option !== OPT_EXPORT_NAME) {
        const r = readOptionReply(s, option);
        if (typeof r === 'string') return bad(r);
        if (r === null || r.type < 2 ** 31) return bad(`an option of ${length} bytes was not refused`);
      }
      return expectEnd(`an option of ${length} bytes`);
    }
    const payload = c.take(length);
    if (!payload) return expectEnd('the client left inside an option');
    if (option === OPT_EXPORT_NAME) {
      if (s.left === 0) return verdict; // dropped: an unknown export name ends the session
      const reply = s.take(noZeroes ? 10 : 134);
      if (!reply) return bad('a short export-name reply');
      const size = Number(reply.readBigUInt64BE(0));
      if (![...exports.values()].includes(size)) return bad(`export-name reply with size ${size}`);
      break;
    }
    // Every other option gets replies echoing it, ending with ACK or an error.
    let entered = false;
    const pendingContexts = new Set<number>();
    for (;;) {
      const r = readOptionReply(s, option);
      if (typeof r === 'string') return bad(r);
      if (r === null) return bad(`no final reply to option ${option}`);
      if (r.type >= 2 ** 31) break;
      if (r.type === REP_ACK) {
        if (option === OPT_STRUCTURED_REPLY) structured = true;
        if (option === OPT_SET_META) contexts = pendingContexts;
        if (option === OPT_GO) entered = true;
        break;
      }
      const allowed = r.type === REP_SERVER ? option === OPT_LIST
        : r.type === REP_INFO ? option === OPT_INFO || option === OPT_GO
          : r.type === REP_META_CONTEXT ? option === OPT_LIST_META || option === OPT_SET_META : false;
      if (!allowed) return bad(`reply type ${r.type} to option ${option}`);
      if (r.type === REP_INFO) {
        const problem = infoProblem(r.data, exports);
        if (problem) return bad(problem);
      }
      if (r.type === REP_META_CONTEXT) {
        if (r.data.length < 5) return bad('a short META_CONTEXT reply');
        pendingContexts.add(r.data.readUInt32BE(0));
      }
    }
    if (option === OPT_ABORT) return expectEnd('ABORT');
    if (entered) break;
  }

  verdict.reachedTransmission = true;
  // The requests the server received, framed as it must frame them.
  const outstanding = new Map<bigint, Outstanding>();
  let ambiguous = false;
  for (;;) {
    const h = c.take(28);
    if (!h || h.readUInt32BE(0) !== REQUEST_MAGIC) break;
    const type = h.readUInt16BE(6);
    if (type === CMD_DISC) break;
    const length = h.readUInt32BE(24);
    if (type === CMD_WRITE && !c.take(length)) break; // the client left inside the payload
    const handle = h.readBigUInt64BE(8);
    if (outstanding.has(handle)) ambiguous = true;
    outstanding.set(handle, { type, offset: h.readBigUInt64BE(16), length });
  }
  if (ambiguous) return verdict; // two requests with one handle: replies cannot be told apart
  const started = new Set<bigint>();
  while (s.left > 0) {
    if (s.left < 4) return bad('a truncated reply');
    const magic = s.bytes.readUInt32BE(s.at);
    if (magic === SIMPLE_MAGIC) {
      const r = s.take(16);
      if (!r) return bad('a truncated simple reply');
      const error = r.readUInt32BE(4);
      const handle = r.readBigUInt64BE(8);
      const req = outstanding.get(handle);
      if (!req) return bad(`a simple reply for handle ${handle}, which is not outstanding`);
      if (started.has(handle)) return bad(`a simple reply after chunks for handle ${handle}`);
      if (error !== 0 && !NBD_ERRORS.has(error)) return bad(`error ${error} is not an NBD error`);
      if (structured && (req.type === CMD_READ || req.type === CMD_BLOCK_STATUS)) return bad(`a simple reply to command ${req.type} with structured replies`);
      if (req.type === CMD_READ && error === 0 && !s.take(req.length)) return bad('a read reply with too little data');
      outstanding.delete(handle);
      verdict.requestsAnswered++;
    } else if (magic === STRUCTURED_MAGIC) {
      if (!structured) return bad('a structured reply without structured replies negotiated');
      const ch = s.take(20);
      if (!ch) return bad('a truncated chunk header');
      const flags = ch.readUInt16BE(4);
      const type = ch.readUInt16BE(6);
      const handle = ch.readBigUInt64BE(8);
      const length = ch.readUInt32BE(16);
      const req = outstanding.get(handle);
      if (!req) return bad(`a chunk for handle ${handle}, which is not outstanding`);
      const body = s.take(length);
      if (!body) return bad('a truncated chunk payload');
      const problem = chunkProblem(type, body, req, contexts);
      if (problem) return bad(`${problem} (handle ${handle})`);
      if ((flags & ~1) !== 0) return bad(`chunk flags 0x${flags.toString(16)}`);
      started.add(handle);
      if (flags & 1) { outstanding.delete(handle); started.delete(handle); verdict.requestsAnswered++; }
    } else {
      return bad(`reply magic 0x${magic.toString(16)}`);
    }
  }
  if (outstanding.size > 0) return bad(`${outstanding.size} request(s) never answered (handles ${[...outstanding.keys()].slice(0, 5).join(', ')})`);
  return verdict;
}

function readOptionReply(s: Cursor, option: number): { type: number; data: Buffer } | null | string {
  if (s.left === 0) return null;
  const h = s.take(20);
  if (!h) return 'a truncated option reply';
  if (h.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) return 'option reply magic';
  if (h.readUInt32BE(8) !== option) return `a reply to option ${h.readUInt32BE(8)} while option ${option} was pending`;
  const type = h.readUInt32BE(12);
  const length = h.readUInt32BE(16);
  if (length > 64 * 1024) return `an option reply of ${length} bytes`;
  if (type >= 2 ** 31 && (type - 2 ** 31 < 1 || type - 2 ** 31 > 9)) return `option error type 0x${type.toString(16)}`;
  if (type < 2 ** 31 && (type < 1 || type > 4)) return `option reply type ${type}`;
  const data = s.take(length);
  if (!data) return 'a truncated option reply payload';
  return { type, data };
}

function infoProblem(data: Buffer, exports: Map<string, number>): string | null {
  if (data.length < 2) return 'an empty INFO reply';
  const kind = data.readUInt16BE(0);
  if (kind === 0) {
    if (data.length !== 12) return `NBD_INFO_EXPORT of ${data.length} bytes`;
    const size = Number(data.readBigUInt64BE(2));
    return [...exports.values()].includes(size) ? null : `NBD_INFO_EXPORT size ${size}`;
  }
  if (kind === 3) {
    if (data.length !== 14) return `NBD_INFO_BLOCK_SIZE of ${data.length} bytes`;
    const [min, pref, max] = [data.readUInt32BE(2), data.readUInt32BE(6), data.readUInt32BE(10)];
    return min >= 1 && min <= pref && pref <= max ? null : `block sizes ${min}/${pref}/${max}`;
  }
  return kind === 1 || kind === 2 ? null : `INFO type ${kind} that was not asked for`;
}

function chunkProblem(type: number, body: Buffer, req: Outstanding, contexts: Set<number>): string | null {
  const end = req.offset + BigInt(req.length);
  const inside = (offset: bigint, length: number) => length > 0 && offset >= req.offset && offset + BigInt(length) <= end;
  switch (type) {
    case 0: return body.length === 0 ? null : 'a NONE chunk with a payload';
    case 1:
      if (req.type !== CMD_READ) return 'OFFSET_DATA for a command that is not a read';
      return body.length > 8 && inside(body.readBigUInt64BE(0), body.length - 8) ? null : 'OFFSET_DATA outside the request';
    case 2:
      if (req.type !== CMD_READ) return 'OFFSET_HOLE for a command that is not a read';
      return body.length === 12 && inside(body.readBigUInt64BE(0), body.readUInt32BE(8)) ? null : 'OFFSET_HOLE outside the request';
    case 5: {
      if (req.type !== CMD_BLOCK_STATUS) return 'BLOCK_STATUS for another command';
      if (body.length < 12 || (body.length - 4) % 8 !== 0) return `BLOCK_STATUS of ${body.length} bytes`;
      if (!contexts.has(body.readUInt32BE(0))) return `BLOCK_STATUS for context ${body.readUInt32BE(0)}, never negotiated`;
      let total = 0n;
      for (let at = 4; at < body.length; at += 8) {
        const length = body.readUInt32BE(at);
        if (length === 0) return 'a BLOCK_STATUS descriptor of length 0';
        total += BigInt(length);
      }
      return total <= BigInt(req.length) ? null : 'BLOCK_STATUS descriptors past the request';
    }
    case 32769: case 32770: {
      if (body.length < 6) return 'a short ERROR chunk';
      const error = body.readUInt32BE(0);
      if (!NBD_ERRORS.has(error)) return `ERROR chunk with error ${error}`;
      return body.readUInt16BE(4) <= body.length - 6 ? null : 'ERROR chunk message past its payload';
    }
    default: return `chunk type ${type}`;
  }
}
