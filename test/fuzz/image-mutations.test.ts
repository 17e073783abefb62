// Mutated images never crash, hang or blow up any operation (issue 15): thousands of
// structure-aware mutations of valid images (test/support/fuzz-mutations.ts) each go through
// open, read, map, check, check -r all, a read-write open (with the NEED_CHECK repair),
// writes and convert; only typed errors may come out, every repaired image checks clean (and,
// on a deterministic sample, so says `qemu-img check`), no case runs past the hang bound or the
// worker's heap limit. Every case that ever failed is kept below and runs first.
//
// QED_FUZZ_SEED=n repeats a run (each run prints its seed); QED_FUZZ_SOAK=N runs 500·N times
// as many cases (QED_FUZZ_SOAK=1: a million).
import test from 'node:test';
import assert from 'node:assert/strict';
import { fuzzSeed, fuzzSoakFactor, runCampaign } from '../support/fuzz-run.js';
import type { ImageFuzzJob } from '../support/image-fuzz-worker.js';
import type { FuzzCase } from '../support/fuzz-mutations.js';

const CI_CASES = 2000;

/** Cases found failing by earlier runs, fixed since; each failed before its fix. */
export const IMAGE_REGRESSIONS: FuzzCase[] = [
  // check -r all left an L1 entry whose table overlaps clusters in use (here the L1 table
  // itself; then a data cluster): the dirty image could never be opened read-write
  // (test/unit/check/overlapping-table-repair.test.ts).
  { base: 0, mutations: [{ kind: 'entry', level: 'l1', table: 0, index: 0, value: { anchor: 'l1', which: 0, delta: 0 } }, { kind: 'needCheck' }] },
  { base: 0, mutations: [{ kind: 'entry', level: 'l1', table: 0, index: 0, value: { anchor: 'l2', which: 0, delta: -4096 } }, { kind: 'backing', name: 'base.raw', raw: false }, { kind: 'needCheck' }] },
  // A dirty image opened read-only did not read as its repair leaves it: two L1 entries naming
  // one table; an L2 entry naming its own table while the repair changed that table
  // (test/unit/engine/dirty-read-only-whole-image.test.ts).
  { base: 0, mutations: [{ kind: 'entry', level: 'l1', table: 0, index: 0, value: { anchor: 'l2', which: 9, delta: 0 } }, { kind: 'needCheck' }] },
  { base: 0, mutations: [{ kind: 'entry', level: 'l2', table: 0, index: 0, value: { anchor: 'tableBytes', which: 0, delta: 4096 } }, { kind: 'flip', region: 'l2', at: 1057, bit: 0 }, { kind: 'needCheck' }] },
];

test('mutated images: only typed errors, no hang, bounded memory, clean after repair (ours and qemu-img)', { timeout: 30 * 60 * 1000 }, async () => {
  const seed = fuzzSeed();
  const cases = CI_CASES * fuzzSoakFactor();
  const job: ImageFuzzJob = { seed, cases, regressions: IMAGE_REGRESSIONS, qemuEvery: 10 };
  const started = performance.now();
  const report = await runCampaign(new URL('../support/image-fuzz-worker.js', import.meta.url), job, { caseMs: 20_000, heapMb: 768 });
  for (const line of report.log) console.log(line);
  const s = report.stats;
  console.log(`image fuzzer: seed ${seed} (QED_FUZZ_SEED=${seed} repeats it), ${s['cases'] ?? 0} generated cases + ${s['regressions'] ?? 0} regression cases`
    + ` in ${((performance.now() - started) / 1000).toFixed(1)} s; ${s['completedOps'] ?? 0} operations completed, ${s['refusedOps'] ?? 0} refused with typed errors;`
    + ` ${s['repairedImages'] ?? 0} images repaired, ${s['qemuChecked'] ?? 0} of them also checked clean by qemu-img (${s['qemuCouldNotOpen'] ?? 0} sampled that qemu-img could not open); peak heap and buffers ${s['peakMemoryMiB'] ?? 0} MiB`);
  assert.equal(report.failure, null, report.failure ?? '');
  assert.equal(s['cases'], cases, 'every generated case ran');
  assert.ok((s['qemuChecked'] ?? 0) > 0, 'qemu-img judged some repaired images');
});
