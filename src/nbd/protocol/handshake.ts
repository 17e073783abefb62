// The handshake phase (fixed newstyle): the server's greeting, the client's flags, option
// headers and payloads, option replies. Pure: bytes in, typed values out, every declared
// length checked against the bytes present and against MAX_STRING_BYTES.
import {
  IHAVEOPT, MAX_STRING_BYTES, NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES, NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION, NBD_INFO_EXPORT, NBD_INFO_NAME, NBD_OPT_REPLY_MAGIC, NBD_REP_INFO, NBDMAGIC,
} from './constants.js';
import { decodeString, encodeString, putU16be, putU32be, putU64be, u16be, u32be, u64be } from './wire.js';

export const GREETING_BYTES = 18;
export const CLIENT_FLAGS_BYTES = 4;
export const OPTION_HEADER_BYTES = 16;

export function encodeGreeting(): Uint8Array {
  const out = new Uint8Array(GREETING_BYTES);
  putU64be(out, 0, NBDMAGIC);
  putU64be(out, 8, IHAVEOPT);
  putU16be(out, 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  return out;
}

export function decodeClientFlags(bytes: Uint8Array): number {
  return u32be(bytes, 0);
}

export type OptionHeader = { ok: true; option: number; length: number } | { ok: false; reason: string };

export function decodeOptionHeader(bytes: Uint8Array): OptionHeader {
  if (u64be(bytes, 0) !== IHAVEOPT) return { ok: false, reason: 'bad option magic' };
  return { ok: true, option: u32be(bytes, 8), length: u32be(bytes, 12) };
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/** A length-prefixed string at `at`; `lengthBytes` is 4 (names, queries) or 2 (messages). */
function readString(payload: Uint8Array, at: number, what: string): Parsed<{ text: string; end: number }> {
  if (at + 4 > payload.length) return { ok: false, reason: `${what} length runs past the option` };
  const length = u32be(payload, at);
  if (length > MAX_STRING_BYTES) return { ok: false, reason: `${what} is longer than ${MAX_STRING_BYTES} bytes` };
  if (at + 4 + length > payload.length) return { ok: false, reason: `${what} runs past the option` };
  const text = decodeString(payload.subarray(at + 4, at + 4 + length));
  if (text === null) return { ok: false, reason: `${what} is not valid UTF-8 or contains NUL` };
  return { ok: true, value: { text, end: at + 4 + length } };
}

export interface ExportRequest { name: string; infoRequests: number[] }

/** NBD_OPT_INFO / NBD_OPT_GO: name, then a count of 16-bit information requests. */
export function parseExportRequest(payload: Uint8Array): Parsed<ExportRequest> {
  const name = readString(payload, 0, 'export name');
  if (!name.ok) return name;
  let at = name.value.end;
  if (at + 2 > payload.length) return { ok: false, reason: 'information request count runs past the option' };
  const count = u16be(payload, at);
  at += 2;
  if (at + count * 2 !== payload.length) return { ok: false, reason: `option length does not match ${count} information requests` };
  const infoRequests: number[] = [];
  for (let i = 0; i < count; i++) infoRequests.push(u16be(payload, at + i * 2));
  return { ok: true, value: { name: name.value.text, infoRequests } };
}

export interface MetaContextRequest { exportName: string; queries: string[] }

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: export name, then counted queries. */
export function parseMetaContextRequest(payload: Uint8Array, maxQueries: number): Parsed<MetaContextRequest> {
  const name = readString(payload, 0, 'export name');
  if (!name.ok) return name;
  let at = name.value.end;
  if (at + 4 > payload.length) return { ok: false, reason: 'query count runs past the option' };
  const count = u32be(payload, at);
  at += 4;
  if (count > maxQueries) return { ok: false, reason: `${count} queries is more than ${maxQueries}` };
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    const query = readString(payload, at, 'query');
    if (!query.ok) return query;
    queries.push(query.value.text);
    at = query.value.end;
  }
  if (at !== payload.length) return { ok: false, reason: 'trailing bytes after the queries' };
  return { ok: true, value: { exportName: name.value.text, queries } };
}

export function encodeOptionReply(option: number, type: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(20 + data.length);
  putU64be(out, 0, NBD_OPT_REPLY_MAGIC);
  putU32be(out, 8, option);
  putU32be(out, 12, type);
  putU32be(out, 16, data.length);
  out.set(data, 20);
  return out;
}

/** An error reply with a human-readable message, bounded so it never echoes much of what the client sent. */
export function encodeOptionError(option: number, type: number, message: string): Uint8Array {
  return encodeOptionReply(option, type, encodeString(message.slice(0, 256)));
}

export function encodeInfoExport(option: number, size: number, transmissionFlags: number): Uint8Array {
  const data = new Uint8Array(12);
  putU16be(data, 0, NBD_INFO_EXPORT);
  putU64be(data, 2, size);
  putU16be(data, 10, transmissionFlags);
  return encodeOptionReply(option, NBD_REP_INFO, data);
}

export function encodeInfoText(option: number, kind: typeof NBD_INFO_NAME | typeof NBD_INFO_DESCRIPTION, text: string): Uint8Array {
  const bytes = encodeString(text);
  const data = new Uint8Array(2 + bytes.length);
  putU16be(data, 0, kind);
  data.set(bytes, 2);
  return encodeOptionReply(option, NBD_REP_INFO, data);
}

export function encodeInfoBlockSize(option: number, minimum: number, preferred: number, maximum: number): Uint8Array {
  const data = new Uint8Array(14);
  putU16be(data, 0, NBD_INFO_BLOCK_SIZE);
  putU32be(data, 2, minimum);
  putU32be(data, 6, preferred);
  putU32be(data, 10, maximum);
  return encodeOptionReply(option, NBD_REP_INFO, data);
}

/** NBD_REP_SERVER: a name and, after it, an optional description. */
export function encodeServerEntry(option: number, type: number, name: string, description: string): Uint8Array {
  const nameBytes = encodeString(name);
  const descBytes = encodeString(description);
  const data = new Uint8Array(4 + nameBytes.length + descBytes.length);
  putU32be(data, 0, nameBytes.length);
  data.set(nameBytes, 4);
  data.set(descBytes, 4 + nameBytes.length);
  return encodeOptionReply(option, type, data);
}

export function encodeMetaContext(option: number, type: number, id: number, name: string): Uint8Array {
  const nameBytes = encodeString(name);
  const data = new Uint8Array(4 + nameBytes.length);
  putU32be(data, 0, id);
  data.set(nameBytes, 4);
  return encodeOptionReply(option, type, data);
}

/** The reply that ends NBD_OPT_EXPORT_NAME: size, transmission flags and (unless NO_ZEROES) 124 zeros. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Uint8Array {
  const out = new Uint8Array(10 + (noZeroes ? 0 : 124));
  putU64be(out, 0, size);
  putU16be(out, 8, transmissionFlags);
  return out;
}
