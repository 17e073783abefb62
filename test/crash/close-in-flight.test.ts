// Crash safety of the request lifecycle (checked-device.ts [L1]..[L3]) and of FUA writes:
//   - close() called while writes (allocating, partial, in place, across L2 tables, mixing
//     data and new clusters) and write-zeroes (aligned, unaligned, with and without NO_HOLE)
//     are still in flight. Every request admitted before close() must resolve, close() must
//     resolve, requests issued after it began must fail with SHUTDOWN (and none of their bytes
//     may appear: they are not in the guest log, so the content check would call them a third
//     value), and once close() resolved every write acknowledged before it must read back
//     (the guest log records close as a sync that drains: content-model.ts);
//   - FUA writes and FUA write-zeroes, alone and in flight together with plain ones: each is
//     durable in every crash state after it was acknowledged, with no flush of its own.
// Every crash state of every flush epoch is judged by the explorer as usual (consistency after
// repair, flushed data kept, every other sector old or new): test/support/crash-explorer.ts.
// The workloads: test/support/lifecycle-workloads.ts; broken-engine.test.ts shows that an
// engine writing back before the requests drained, or ignoring FUA, is caught by them.
import test from 'node:test';
import assert from 'node:assert/strict';
import { exploreInWorker, reportLine, type RunTuning } from '../support/crash-explorer.js';

const WORKLOADS = new URL('../support/lifecycle-workloads.js', import.meta.url).href;

/**
 * Epochs with many requests in flight have many pending writes: fewer random subsets each
 * buys more recordings; a few qemu-img samples keep the run short.
 */
const TUNING: RunTuning = { states: { randomSubsets: 120 }, qemuSamples: 12 };

test('close() with writes and write-zeroes in flight: every admitted request resolves, newcomers get SHUTDOWN, every acknowledged write survives every crash after close', async () => {
  const result = await exploreInWorker([{ moduleUrl: WORKLOADS, exportName: 'closeWorkloads' }], 'close with requests in flight', 5_000, 'workload', TUNING);
  console.log(reportLine('close with requests in flight', result));
  assert.deepEqual(result.violations.slice(0, 3), []);
  assert.ok(result.states - result.repairStates >= 5_000, `explored only ${result.states - result.repairStates} workload crash states`);
});

test('a FUA write or write-zeroes is durable in every crash state after it was acknowledged, with no flush', async () => {
  const result = await exploreInWorker([{ moduleUrl: WORKLOADS, exportName: 'fuaWorkloads' }], 'FUA', 3_000, 'workload', TUNING);
  console.log(reportLine('FUA', result));
  assert.deepEqual(result.violations.slice(0, 3), []);
  assert.ok(result.states - result.repairStates >= 3_000, `explored only ${result.states - result.repairStates} workload crash states`);
});
