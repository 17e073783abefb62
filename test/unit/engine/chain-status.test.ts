// Block status through the whole chain, with the depth of the layer that answers: what the
// NBD contexts base:allocation and qemu:allocation-depth are built from.
import test from 'node:test';
import assert from 'node:assert/strict';
import { QedError } from '../../../src/base/errors.js';
import { chainBlockStatus, CHAIN_STATUS_STEP, type ChainExtent } from '../../../src/engine/chain-status.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const TiB = 1024 * 1024 * MiB;

async function collect(it: AsyncIterable<ChainExtent>): Promise<ChainExtent[]> {
  const out: ChainExtent[] = [];
  for await (const e of it) out.push(e);
  return out;
}

test('each run names the layer that answers: top data, backing data, zero cluster, absent past the backing file', async () => {
  const store = new MemoryStore();
  store.add('base.raw').writeSync(new Uint8Array(2 * MiB).fill(1), 0);
  await createImage('mid.qed', { store, size: 4 * MiB, clusterSize: 64 * KiB, backingFile: 'base.raw', backingFormat: 'raw' });
  await createImage('top.qed', { store, size: 4 * MiB, clusterSize: 64 * KiB, backingFile: 'mid.qed', backingFormat: 'qed' });
  const mid = await openDevice('mid.qed', { store });
  await mid.write(new Uint8Array(64 * KiB).fill(2), MiB);
  await mid.close();
  const top = await openDevice('top.qed', { store });
  await top.write(new Uint8Array(64 * KiB).fill(3), 0);
  await top.writeZeroes(3 * MiB, 64 * KiB);
  const runs = (await collect(chainBlockStatus(top, 0, 4 * MiB))).map(({ start, length, depth, present, zero, data }) => ({ start, length, depth, present, zero, data }));
  assert.deepEqual(runs, [
    { start: 0, length: 64 * KiB, depth: 0, present: true, zero: false, data: true },
    { start: 64 * KiB, length: MiB - 64 * KiB, depth: 2, present: true, zero: false, data: true },
    { start: MiB, length: 64 * KiB, depth: 1, present: true, zero: false, data: true },
    { start: MiB + 64 * KiB, length: MiB - 64 * KiB, depth: 2, present: true, zero: false, data: true },
    { start: 2 * MiB, length: MiB, depth: 1, present: false, zero: true, data: false },
    { start: 3 * MiB, length: 64 * KiB, depth: 0, present: true, zero: true, data: false },
    { start: 3 * MiB + 64 * KiB, length: MiB - 64 * KiB, depth: 1, present: false, zero: true, data: false },
  ]);
  await top.close();
});

test('a 64 TiB image is walked in bounded steps and yields merged runs as it goes', async () => {
  const store = new MemoryStore();
  await createImage('huge.qed', { store, size: 64 * TiB, clusterSize: 64 * KiB, tableSize: 16 });
  const device = await openDevice('huge.qed', { store });
  await device.write(new Uint8Array(4 * KiB).fill(1), 40 * TiB);
  let calls = 0;
  let widest = 0;
  const counted = new Proxy(device, {
    get(target, prop, receiver) {
      if (prop === 'layerStatus') return (o: number, l: number) => { calls++; widest = Math.max(widest, l); return target.layerStatus(o, l); };
      return Reflect.get(target, prop, receiver);
    },
  });
  const iterator = chainBlockStatus(counted, 0, 64 * TiB)[Symbol.asyncIterator]();
  const first = await iterator.next();
  assert.equal(first.done, false);
  assert.deepEqual({ start: first.value.start, length: first.value.length, data: first.value.data }, { start: 0, length: 40 * TiB, data: false });
  const step = Math.max(CHAIN_STATUS_STEP, 8192 * 64 * KiB); // at least 8192 clusters
  assert.ok(widest <= step, 'no layer is asked for more than one step');
  const rest: ChainExtent[] = [];
  for (let r = await iterator.next(); !r.done; r = await iterator.next()) rest.push(r.value);
  assert.deepEqual(rest.map((e) => [e.start, e.length, e.data]), [[40 * TiB, 64 * KiB, true], [40 * TiB + 64 * KiB, 24 * TiB - 64 * KiB, false]]);
  assert.equal(calls, (64 * TiB) / step);
  await device.close();
});

test('a range past the end is refused', async () => {
  const store = new MemoryStore();
  await createImage('a.qed', { store, size: MiB });
  const device = await openDevice('a.qed', { store, readOnly: true });
  await assert.rejects(collect(chainBlockStatus(device, 0, 2 * MiB)), (err: unknown) => err instanceof QedError && err.code === 'RANGE');
  await device.close();
});

test('a sparse L2 table of 64 MiB clusters is walked in steps of thousands of clusters and by whole chunks: two runs, a few hundred requests', async () => {
  const store = new MemoryStore();
  await createImage('wide.qed', { store, size: 64 * TiB, clusterSize: 64 * MiB, tableSize: 16 });
  const device = await openDevice('wide.qed', { store });
  await device.write(new Uint8Array(4096).fill(1), 0);
  let calls = 0;
  const counted = new Proxy(device, {
    get(target, prop, receiver) {
      if (prop === 'layerStatus') return (o: number, l: number) => { calls++; return target.layerStatus(o, l); };
      return Reflect.get(target, prop, receiver);
    },
  });
  const runs = await collect(chainBlockStatus(counted, 0, 64 * TiB));
  assert.deepEqual(runs.map((e) => [e.start, e.length, e.data]), [[0, 64 * MiB, true], [64 * MiB, 64 * TiB - 64 * MiB, false]]);
  assert.ok(calls <= 512, `${calls} block status requests for 2^20 clusters (256 MiB steps would make 262144)`);
  await device.close();
});
