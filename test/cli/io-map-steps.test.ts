// qemu-io's `map` and `alloc` in `qed io` ask the top layer for its runs in bounded steps and
// print as they go: an empty 64 TiB image is one request, and a fragmented stretch is walked
// a step of at most CHAIN_STATUS_MAX_RUNS runs at a time, never as one whole-image answer.
import test from 'node:test';
import assert from 'node:assert/strict';
import { allocatedRuns } from '../../src/cli/io-commands.js';
import { CHAIN_STATUS_MAX_RUNS } from '../../src/engine/chain-status.js';
import type { BlockDevice } from '../../src/engine/device.js';
import { MemoryStore } from '../../src/io/memory-file.js';
import { createImage } from '../../src/ops/create.js';
import { openDevice } from '../../src/ops/open.js';

const KiB = 1024;
const GiB = 1024 * 1024 * KiB;
const TiB = 1024 * GiB;

/** The device with its status requests counted: bounded ones, their largest answer, and whole-range ones. */
function counted(device: BlockDevice): { device: BlockDevice; bounded: number; largest: number; whole: number } {
  const counts = { device, bounded: 0, largest: 0, whole: 0 };
  counts.device = new Proxy(device, {
    get(target, prop, receiver) {
      if (prop === 'layerStatusUpTo') {
        return async (o: number, l: number, m: number) => {
          counts.bounded++;
          const runs = await target.layerStatusUpTo!(o, l, m);
          counts.largest = Math.max(counts.largest, runs.length);
          return runs;
        };
      }
      if (prop === 'layerStatus') return (o: number, l: number) => { counts.whole++; return target.layerStatus(o, l); };
      return Reflect.get(target, prop, receiver);
    },
  });
  return counts;
}

test('map of a 256 GiB image with one fragmented stretch walks it in bounded steps and merges runs as qemu-io does', async () => {
  const store = new MemoryStore();
  await createImage('big.qed', { store, size: 256 * GiB, clusterSize: 4 * KiB, tableSize: 16 });
  const device = await openDevice('big.qed', { store });
  // Every other 4 KiB cluster from 100 GiB on: no two allocated runs merge.
  const stripes = 2 * CHAIN_STATUS_MAX_RUNS;
  for (let i = 0; i < stripes; i++) await device.write(new Uint8Array(4 * KiB).fill(1), 100 * GiB + 2 * i * 4 * KiB);
  // A zero cluster counts as allocated (QEMU's bdrv_is_allocated).
  await device.writeZeroes(10 * GiB, 4 * KiB);
  const watch = counted(device);
  const runs = [];
  for await (const r of allocatedRuns(watch.device, 0, device.size)) runs.push(r);
  assert.deepEqual(runs.slice(0, 4), [
    { start: 0, length: 10 * GiB, allocated: false },
    { start: 10 * GiB, length: 4 * KiB, allocated: true },
    { start: 10 * GiB + 4 * KiB, length: 90 * GiB - 4 * KiB, allocated: false },
    { start: 100 * GiB, length: 4 * KiB, allocated: true },
  ]);
  assert.equal(runs.length, 3 + 2 * stripes);
  assert.deepEqual(runs.at(-1), { start: 100 * GiB + (2 * stripes - 1) * 4 * KiB, length: 156 * GiB - (2 * stripes - 1) * 4 * KiB, allocated: false });
  assert.equal(watch.whole, 0, 'never one answer for the whole image');
  assert.ok(watch.largest <= CHAIN_STATUS_MAX_RUNS, `one answer held ${watch.largest} runs`);
  assert.ok(watch.bounded <= 8, `${watch.bounded} status requests`);
  await device.close();
});

test('an empty 64 TiB image is one run from one request', async () => {
  const store = new MemoryStore();
  await createImage('empty.qed', { store, size: 64 * TiB });
  const device = await openDevice('empty.qed', { store, readOnly: true });
  const watch = counted(device);
  const runs = [];
  for await (const r of allocatedRuns(watch.device, 0, device.size)) runs.push(r);
  assert.deepEqual(runs, [{ start: 0, length: 64 * TiB, allocated: false }]);
  assert.equal(watch.bounded, 1);
  assert.equal(watch.whole, 0);
  await device.close();
});
