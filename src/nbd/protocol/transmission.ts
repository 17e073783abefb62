// The transmission phase: request headers in, simple and structured replies out. Pure.
import {
  NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA, NBD_REPLY_TYPE_OFFSET_HOLE, NBD_REQUEST_MAGIC, NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from './constants.js';
import { encodeString, putU16be, putU32be, putU64be, u16be, u32be, u64be } from './wire.js';

export const REQUEST_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const CHUNK_HEADER_BYTES = 20;

export interface Request {
  flags: number;
  type: number;
  /** Opaque to the server: echoed in the reply. */
  handle: bigint;
  offset: bigint;
  length: number;
}

export type DecodedRequest = { ok: true; request: Request } | { ok: false; reason: string };

export function decodeRequest(bytes: Uint8Array): DecodedRequest {
  const magic = u32be(bytes, 0);
  if (magic !== NBD_REQUEST_MAGIC) return { ok: false, reason: `bad request magic 0x${magic.toString(16)}` };
  return {
    ok: true,
    request: { flags: u16be(bytes, 4), type: u16be(bytes, 6), handle: u64be(bytes, 8), offset: u64be(bytes, 16), length: u32be(bytes, 24) },
  };
}

/** A simple reply header; for a successful simple read the data follows it. */
export function encodeSimpleReply(handle: bigint, error: number): Uint8Array {
  const out = new Uint8Array(SIMPLE_REPLY_BYTES);
  putU32be(out, 0, NBD_SIMPLE_REPLY_MAGIC);
  putU32be(out, 4, error);
  putU64be(out, 8, handle);
  return out;
}

function chunk(handle: bigint, flags: number, type: number, payloadLength: number, headerExtra: number): Uint8Array {
  const out = new Uint8Array(CHUNK_HEADER_BYTES + headerExtra);
  putU32be(out, 0, NBD_STRUCTURED_REPLY_MAGIC);
  putU16be(out, 4, flags);
  putU16be(out, 6, type);
  putU64be(out, 8, handle);
  putU32be(out, 16, payloadLength);
  return out;
}

/** Header of an OFFSET_DATA chunk (with its 8-byte offset); `dataLength` bytes of data follow. */
export function encodeOffsetDataHeader(handle: bigint, done: boolean, offset: number, dataLength: number): Uint8Array {
  const out = chunk(handle, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_DATA, 8 + dataLength, 8);
  putU64be(out, CHUNK_HEADER_BYTES, offset);
  return out;
}

export function encodeOffsetHole(handle: bigint, done: boolean, offset: number, length: number): Uint8Array {
  const out = chunk(handle, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_HOLE, 12, 12);
  putU64be(out, CHUNK_HEADER_BYTES, offset);
  putU32be(out, CHUNK_HEADER_BYTES + 8, length);
  return out;
}

export function encodeNone(handle: bigint): Uint8Array {
  return chunk(handle, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0, 0);
}

/** One BLOCK_STATUS chunk: a context id, then (length, status) descriptors. */
export function encodeBlockStatus(handle: bigint, done: boolean, contextId: number, descriptors: ReadonlyArray<{ length: number; status: number }>): Uint8Array {
  const payload = 4 + descriptors.length * 8;
  const out = chunk(handle, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_BLOCK_STATUS, payload, payload);
  putU32be(out, CHUNK_HEADER_BYTES, contextId);
  let at = CHUNK_HEADER_BYTES + 4;
  for (const d of descriptors) {
    putU32be(out, at, d.length);
    putU32be(out, at + 4, d.status);
    at += 8;
  }
  return out;
}

/** A final ERROR chunk; the message is bounded and never more than a short description. */
export function encodeErrorChunk(handle: bigint, error: number, message: string): Uint8Array {
  const text = encodeString(message.slice(0, 200));
  const payload = 6 + text.length;
  const out = chunk(handle, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, payload, payload);
  putU32be(out, CHUNK_HEADER_BYTES, error);
  putU16be(out, CHUNK_HEADER_BYTES + 4, text.length);
  out.set(text, CHUNK_HEADER_BYTES + 6);
  return out;
}
