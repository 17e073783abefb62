// Byte-order helpers. QED is little-endian throughout (u32le/u64le); the NBD protocol, when it
// comes, is big-endian and will get its own u32be helpers here.
import { FormatError } from './errors.js';

export function u32le(buf: Uint8Array, at: number): number {
  return (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16)) + buf[at + 3]! * 0x1000000;
}

export function putU32le(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value & 0xff;
  buf[at + 1] = (value >>> 8) & 0xff;
  buf[at + 2] = (value >>> 16) & 0xff;
  buf[at + 3] = (value >>> 24) & 0xff;
}

export function u64le(buf: Uint8Array, at: number): bigint {
  return BigInt(u32le(buf, at)) | (BigInt(u32le(buf, at + 4)) << 32n);
}

export function putU64le(buf: Uint8Array, at: number, value: bigint): void {
  putU32le(buf, at, Number(value & 0xffffffffn));
  putU32le(buf, at + 4, Number((value >> 32n) & 0xffffffffn));
}

/**
 * A u64 field narrowed to a JS number. Offsets and sizes up to 2^53 are exact; anything
 * larger cannot be a real offset in a file we can open, so it is a format error naming the field.
 */
export function narrowU64(value: bigint, field: string, path?: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new FormatError(`${field} 0x${value.toString(16)} is too large`, { path, field });
  }
  return Number(value);
}

/**
 * Table entries are offsets too, read in bulk on the hot path. Reading two u32 halves avoids a
 * BigInt per entry; an entry above 2^53 comes back as Infinity, which every validity check rejects.
 */
export function entryAt(view: DataView, index: number): number {
  const lo = view.getUint32(index * 8, true);
  const hi = view.getUint32(index * 8 + 4, true);
  return hi >= 0x200000 ? Infinity : hi * 0x100000000 + lo;
}

export function putEntryAt(view: DataView, index: number, value: number): void {
  view.setUint32(index * 8, value % 0x100000000, true);
  view.setUint32(index * 8 + 4, Math.floor(value / 0x100000000), true);
}
