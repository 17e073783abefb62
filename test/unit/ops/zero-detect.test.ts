// Zero detection for convert and measure: one pass over the bytes, a data block rejected by
// its first or last byte, a zero block confirmed by memcmp. Runs must be exactly the maximal
// runs a byte-by-byte look would find, including blocks that are zero at both ends only, and
// long zero runs checked in doubling spans.
import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { forEachDataRun, zeroRuns } from '../../../src/ops/zero-detect.js';

/** Reference: block by block, byte by byte. */
function expectedRuns(buf: Uint8Array, granularity: number): Array<{ start: number; length: number; zero: boolean }> {
  const runs: Array<{ start: number; length: number; zero: boolean }> = [];
  for (let start = 0; start < buf.length; start += granularity) {
    const length = Math.min(granularity, buf.length - start);
    const zero = buf.subarray(start, start + length).every((b) => b === 0);
    const last = runs[runs.length - 1];
    if (last && last.zero === zero) last.length += length;
    else runs.push({ start, length, zero });
  }
  return runs;
}

// Zero-heavy mixes, long enough for the doubling zero spans to grow and to fall back.
const blocks = fc.array(fc.constantFrom('zero', 'zero', 'zero', 'zero', 'data', 'middle', 'first', 'last'), { minLength: 0, maxLength: 400 });

test('zeroRuns and forEachDataRun find the runs a byte-by-byte look finds', async () => {
  await fc.assert(fc.asyncProperty(blocks, fc.constantFrom(512, 4096), fc.nat(511), async (kinds, granularity, tail) => {
    const buf = new Uint8Array(kinds.length * granularity + tail);
    kinds.forEach((kind, i) => {
      const at = i * granularity;
      if (kind === 'data') buf.fill(7, at, at + granularity);
      if (kind === 'middle') buf[at + (granularity >> 1)] = 1; // zero at both ends: needs the full compare
      if (kind === 'first') buf[at] = 1;
      if (kind === 'last') buf[at + granularity - 1] = 1;
    });
    if (tail > 0 && kinds.length % 2 === 0) buf[buf.length - 1] = 9;
    const expected = expectedRuns(buf, granularity);
    assert.deepEqual(zeroRuns(buf, granularity), expected);
    const data: Array<{ start: number; length: number; zero: boolean }> = [];
    await forEachDataRun(buf, granularity, async (start, end) => { data.push({ start, length: end - start, zero: false }); });
    assert.deepEqual(data, expected.filter((r) => !r.zero));
  }), { numRuns: 300 });
});

test('a run larger than the shared zero page is compared in parts', async () => {
  const buf = new Uint8Array(3 * 1024 * 1024 + 4096);
  assert.deepEqual(zeroRuns(buf, 4096), [{ start: 0, length: buf.length, zero: true }]);
  buf[2 * 1024 * 1024 + 100] = 1;
  const runs: Array<[number, number]> = [];
  await forEachDataRun(buf, 1024 * 1024, async (start, end) => { runs.push([start, end]); });
  assert.deepEqual(runs, [[2 * 1024 * 1024, 3 * 1024 * 1024]]);
});
