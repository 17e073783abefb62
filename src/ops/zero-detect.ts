// Byte comparisons for the copy operations: equal ranges, and zero blocks found quickly: memcmp against a shared zero page, through one
// Buffer view per call (not one per block: creating views dominated the cost), in one pass over the bytes.

const ZEROS = Buffer.alloc(1024 * 1024);

function asBuffer(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * True when view[start, end) is all zeros. Data is usually rejected by its first or last byte
 * without a call into memcmp, so a data block is barely touched and a zero block is read once.
 */
function zeroAt(view: Buffer, start: number, end: number): boolean {
  if (end <= start) return true;
  if (view[start] !== 0 || view[end - 1] !== 0) return false;
  for (let at = start; at < end; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, end - at);
    if (view.compare(ZEROS, 0, n, at, at + n) !== 0) return false;
  }
  return true;
}

/**
 * Calls `data(start, end)` for every maximal run of blocks of `granularity` bytes in buf that
 * are not all zero, in order, awaiting each: one pass, no arrays. The copy loops' hot path.
 */
export async function forEachDataRun(buf: Uint8Array, granularity: number, data: (start: number, end: number) => Promise<unknown>): Promise<void> {
  const view = asBuffer(buf);
  let runStart = -1;
  for (let at = 0; at < buf.length; at += granularity) {
    const zero = zeroAt(view, at, Math.min(at + granularity, buf.length));
    if (!zero && runStart < 0) runStart = at;
    else if (zero && runStart >= 0) { await data(runStart, at); runStart = -1; }
  }
  if (runStart >= 0) await data(runStart, buf.length);
}

/** memcmp of two byte ranges. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return asBuffer(a).equals(b);
}

export function isAllZero(buf: Uint8Array): boolean {
  return zeroAt(asBuffer(buf), 0, buf.length);
}

/** Split [0, buf.length) into runs of `granularity`-sized blocks that are all zero or not, in one pass. */
export function zeroRuns(buf: Uint8Array, granularity: number): Array<{ start: number; length: number; zero: boolean }> {
  const view = asBuffer(buf);
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
