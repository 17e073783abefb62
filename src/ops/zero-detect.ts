// Finding zero blocks in a buffer quickly: memcmp against a shared zero page.

const ZEROS = Buffer.alloc(1024 * 1024);

export function isAllZero(buf: Uint8Array): boolean {
  for (let done = 0; done < buf.length; done += ZEROS.length) {
    const n = Math.min(ZEROS.length, buf.length - done);
    const piece = Buffer.from(buf.buffer, buf.byteOffset + done, n);
    if (!piece.equals(ZEROS.subarray(0, n))) return false;
  }
  return true;
}

/** Split [0, buf.length) into runs of `granularity`-sized blocks that are all zero or not. */
export function zeroRuns(buf: Uint8Array, granularity: number): Array<{ start: number; length: number; zero: boolean }> {
  const runs: Array<{ start: number; length: number; zero: boolean }> = [];
  for (let start = 0; start < buf.length; start += granularity) {
    const length = Math.min(granularity, buf.length - start);
    const zero = isAllZero(buf.subarray(start, start + length));
    const last = runs[runs.length - 1];
    if (last && last.zero === zero) last.length += length;
    else runs.push({ start, length, zero });
  }
  return runs;
}
