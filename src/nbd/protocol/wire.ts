// Big-endian field access for the NBD codec (NBD is big-endian; QED is little-endian).

export function u16be(buf: Uint8Array, at: number): number {
  return (buf[at]! << 8) | buf[at + 1]!;
}

export function u32be(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) >>> 0) + ((buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!);
}

export function u64be(buf: Uint8Array, at: number): bigint {
  return (BigInt(u32be(buf, at)) << 32n) | BigInt(u32be(buf, at + 4));
}

export function putU16be(buf: Uint8Array, at: number, value: number): void {
  buf[at] = (value >>> 8) & 0xff;
  buf[at + 1] = value & 0xff;
}

export function putU32be(buf: Uint8Array, at: number, value: number): void {
  buf[at] = (value >>> 24) & 0xff;
  buf[at + 1] = (value >>> 16) & 0xff;
  buf[at + 2] = (value >>> 8) & 0xff;
  buf[at + 3] = value & 0xff;
}

export function putU64be(buf: Uint8Array, at: number, value: bigint | number): void {
  const big = BigInt(value);
  putU32be(buf, at, Number((big >> 32n) & 0xffffffffn));
  putU32be(buf, at + 4, Number(big & 0xffffffffn));
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function encodeString(text: string): Uint8Array {
  return utf8.encode(text);
}

/** A protocol string: valid UTF-8 without NUL, or null. */
export function decodeString(bytes: Uint8Array): string | null {
  if (bytes.includes(0)) return null;
  try { return strictUtf8.decode(bytes); } catch { return null; }
}
