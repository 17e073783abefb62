// Byte comparisons for the copy operations: equal ranges, and zero blocks found quickly: memcmp against a shared zero page, through one
// Buffer view per call (not one per block: creating views dominated the cost).

const ZEROS = Buffer.alloc(1024 * 1024);

function asBuffer(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** True when view[start, end) is all zeros. */
function zeroAt(view: Buffer, start: number, end: number): boolean {
  for (let at = start; at < end; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, end - at);
    if (view.compare(ZEROS, 0, n, at, at + n) !== 0) return false;
  }
  return true;
}

/** memcmp of two byte ranges. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return asBuffer(a).equals(b);
}

export function isAllZero(buf: Uint8Array): boolean {
  return zeroAt(asBuffer(buf), 0, buf.length);
}

/** Split [0, buf.length) into runs of `granularity`-sized blocks that are all zero or not. */
export function zeroRuns(buf: Uint8Array, granularity: number): Array<{ start: number; length: number; zero: boolean }> {
  const view = asBuffer(buf);
  if (zeroAt(view, 0, buf.length)) return buf.length === 0 ? [] : [{ start: 0, length: buf.length, zero: true }];
  const runs: Array<{ start: number; length: number; zero: boolean }> = [];
  for (let start = 0; start < buf.length; start += granularity) {
    const length = Math.min(granularity, buf.length - start);
    const zero = zeroAt(view, start, start + length);
    const last = runs[runs.length - 1];
    if (last && last.zero === zero) last.length += length;
    else runs.push({ start, length, zero });
  }
  return runs;
}
