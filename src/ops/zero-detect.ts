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
 * Bytes from `at` (a block boundary) that are zero in whole blocks of `granularity` (the last
 * one may end short at `end`); 0 when the block at `at` holds data. Zero spans double up to
 * the zero page's size, so a long zero run costs a few memcmp calls instead of one per block;
 * when a wide span holds data the scan goes on block by block from where it stood.
 */
function zeroBytesAt(view: Buffer, at: number, end: number, granularity: number): number {
  let pos = at;
  let span = granularity;
  while (pos < end) {
    const stop = Math.min(pos + span, end);
    if (zeroAt(view, pos, stop)) {
      pos = stop;
      span = Math.min(span * 2, Math.max(granularity, ZEROS.length - (ZEROS.length % granularity)));
    } else if (span === granularity) {
      break;
    } else {
      span = granularity;
    }
  }
  return pos - at;
}

/**
 * Calls `data(start, end)` for every maximal run of blocks of `granularity` bytes in buf that
 * are not all zero, in order, awaiting each: one pass, no arrays. The copy loops' hot path.
 */
export async function forEachDataRun(buf: Uint8Array, granularity: number, data: (start: number, end: number) => Promise<unknown>): Promise<void> {
  const view = asBuffer(buf);
  let runStart = -1;
  for (let at = 0; at < buf.length;) {
    const zeros = zeroBytesAt(view, at, buf.length, granularity);
    if (zeros === 0) {
      if (runStart < 0) runStart = at;
      at = Math.min(at + granularity, buf.length);
      continue;
    }
    if (runStart >= 0) { await data(runStart, at); runStart = -1; }
    at += zeros;
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
  for (let start = 0; start < buf.length;) {
    const zeros = zeroBytesAt(view, start, buf.length, granularity);
    const zero = zeros > 0;
    const length = zero ? zeros : Math.min(granularity, buf.length - start);
    const last = runs[runs.length - 1];
    if (last && last.zero === zero) last.length += length;
    else runs.push({ start, length, zero });
    start += length;
  }
  return runs;
}
