// Work per request is bounded by the step, not by the request's length: a write-zeroes over
// the whole of a huge image keeps memory flat and lets other requests through meanwhile.
// The assertions are on memory and on the progress of a concurrent request, never on time.
import test from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

async function zeroWholeImageWhileReading(size: number, clusterSize: number, tableSize: number): Promise<void> {
  // Over a backing file, so that the zeros must also hide data that would show through.
  const store = new MemoryStore();
  store.add('base.raw').writeSync(new Uint8Array(MiB).fill(0xaa), 0);
  await createImage('big.qed', { store, size, clusterSize, tableSize, backingFile: 'base.raw', backingFormat: 'raw' });
  const device = await openDevice('big.qed', { store, idleFlushMs: 60_000 });
  await device.write(new Uint8Array(4 * KiB).fill(7), size - 4 * KiB);
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  let peakHeap = heapBefore;
  let zeroDone = false;
  let readsAnsweredDuringZero = 0;
  const zero = device.writeZeroes(0, size - 4 * KiB).then(() => { zeroDone = true; });
  const probe = new Uint8Array(4 * KiB);
  while (!zeroDone) {
    await device.read(probe, size - 4 * KiB);
    assert.equal(probe[0], 7);
    if (!zeroDone) readsAnsweredDuringZero++;
    peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
    await new Promise((r) => setTimeout(r, 5));
  }
  await zero;
  assert.ok(readsAnsweredDuringZero >= 3, `a concurrent read was answered ${readsAnsweredDuringZero} times while zeroing`);
  const growth = peakHeap - heapBefore;
  assert.ok(growth < 96 * MiB, `heap grew by ${(growth / MiB).toFixed(0)} MiB`);
  const buf = new Uint8Array(64 * KiB).fill(1);
  await device.read(buf, size / 2);
  assert.deepEqual(buf, new Uint8Array(64 * KiB));
  await device.close();
  const reopened = await openDevice('big.qed', { store, readOnly: true });
  const status = await reopened.layerStatus(0, Math.min(size, 4 * GiB));
  assert.ok(status.every((e) => e.kind === 'zero'), 'the zeroed range is made of zero clusters');
  const head = new Uint8Array(MiB).fill(1);
  await reopened.read(head, 0);
  assert.deepEqual(head, new Uint8Array(MiB), 'the backing data no longer shows through');
  await reopened.close();
}

test('64 GiB of write-zeroes at 4 KiB clusters: bounded heap, reads answered meanwhile', async () => {
  await zeroWholeImageWhileReading(64 * GiB, 4 * KiB, 8);
});

test('1 TiB of write-zeroes at 64 KiB clusters: bounded heap, reads answered meanwhile', async () => {
  await zeroWholeImageWhileReading(1024 * GiB, 64 * KiB, 4);
});

test('block status of a whole fragmented image lets other work run between L2 tables and merges as before', async () => {
  const store = new MemoryStore();
  await createImage('frag.qed', { store, size: 256 * MiB, clusterSize: 4 * KiB, tableSize: 1 });
  const device = await openDevice('frag.qed', { store });
  for (let at = 0; at < 64 * MiB; at += 8 * KiB) await device.write(new Uint8Array(4 * KiB).fill(1), at);
  let ticks = 0;
  const timer = setInterval(() => { ticks++; }, 0);
  const status = await device.layerStatus(0, 256 * MiB);
  clearInterval(timer);
  assert.ok(ticks > 0, 'timers ran while the status was computed');
  assert.equal(status.length, 2 * 8192 + 96, 'a run per written cluster and per hole after it, then one run per (2 MiB) table of the unwritten tail');
  await device.close();
});

test('a bounded status over a huge dense range answers in one run and lets other work run while it scans the tables', async () => {
  const store = new MemoryStore();
  await createImage('dense.qed', { store, size: 8 * GiB, clusterSize: 64 * KiB, tableSize: 4 });
  const device = await openDevice('dense.qed', { store });
  await device.writeZeroes(0, 8 * GiB); // zero clusters everywhere: 131072 entries, one run
  let ticks = 0;
  const timer = setInterval(() => { ticks++; }, 0);
  const runs = await device.layerStatusUpTo!(0, 8 * GiB, 8192);
  clearInterval(timer);
  assert.deepEqual(runs.map((e) => [e.kind, e.guestOffset, e.length]), [['zero', 0, 8 * GiB]]);
  assert.ok(ticks > 0, 'timers ran while the tables were scanned');
  await device.close();
});
