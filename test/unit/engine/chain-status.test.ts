// Block status through the whole chain, with the depth of the layer that answers: what the
// NBD contexts base:allocation and qemu:allocation-depth are built from.
import test from 'node:test';
import assert from 'node:assert/strict';
import { QedError } from '../../../src/base/errors.js';
import { chainBlockStatus, CHAIN_STATUS_FIRST_RUNS, CHAIN_STATUS_MAX_RUNS, type ChainExtent } from '../../../src/engine/chain-status.js';
import type { BlockDevice } from '../../../src/engine/device.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

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

/** A device whose bounded status requests are counted: calls, and the largest answer one call gave. */
function countingRuns(device: BlockDevice): { device: BlockDevice; calls: () => number; largest: () => number; wholeRangeCalls: () => number } {
  let calls = 0;
  let largest = 0;
  let wholeRangeCalls = 0;
  const counted = new Proxy(device, {
    get(target, prop, receiver) {
      if (prop === 'layerStatusUpTo') {
        return async (o: number, l: number, maxRuns: number) => {
          calls++;
          assert.ok(maxRuns <= CHAIN_STATUS_MAX_RUNS, `asked for ${maxRuns} runs`);
          const runs = await target.layerStatusUpTo!(o, l, maxRuns);
          assert.ok(runs.length >= 1 && runs.length <= maxRuns, `${runs.length} runs for at most ${maxRuns}`);
          largest = Math.max(largest, runs.length);
          return runs;
        };
      }
      if (prop === 'layerStatus') return (o: number, l: number) => { wholeRangeCalls++; return target.layerStatus(o, l); };
      return Reflect.get(target, prop, receiver);
    },
  });
  return { device: counted, calls: () => calls, largest: () => largest, wholeRangeCalls: () => wholeRangeCalls };
}

test('a 64 TiB image is walked in steps as long as its runs allow and yields merged runs as it goes', async () => {
  const store = new MemoryStore();
  await createImage('huge.qed', { store, size: 64 * TiB, clusterSize: 64 * KiB, tableSize: 16 });
  const device = await openDevice('huge.qed', { store });
  await device.write(new Uint8Array(4 * KiB).fill(1), 40 * TiB);
  const counted = countingRuns(device);
  const iterator = chainBlockStatus(counted.device, 0, 64 * TiB)[Symbol.asyncIterator]();
  const first = await iterator.next();
  assert.equal(first.done, false);
  assert.deepEqual({ start: first.value.start, length: first.value.length, data: first.value.data }, { start: 0, length: 40 * TiB, data: false });
  const rest: ChainExtent[] = [];
  for (let r = await iterator.next(); !r.done; r = await iterator.next()) rest.push(r.value);
  assert.deepEqual(rest.map((e) => [e.start, e.length, e.data]), [[40 * TiB, 64 * KiB, true], [40 * TiB + 64 * KiB, 24 * TiB - 64 * KiB, false]]);
  // 256 MiB strides made 262144 requests here.
  assert.equal(counted.calls(), 1, 'three runs fit one step');
  assert.equal(counted.wholeRangeCalls(), 0);
  await device.close();
});

/** Every `every`-th cluster of `clusters` 4 KiB clusters from `first` on, starting at byte `from`. */
interface Stripes { from: number; first: number; every: number; clusters: number }

/**
 * base.qed under top.qed, 256 GiB with 4 KiB clusters (16-cluster tables: 32 MiB an L1
 * entry), data written in stripes into each (base byte 2, top byte 1); returns top, open.
 */
async function stripedChain(inBase: Stripes, inTop: Stripes): Promise<BlockDevice> {
  const store = new MemoryStore();
  await createImage('base.qed', { store, size: 256 * GiB, clusterSize: 4 * KiB, tableSize: 16 });
  await createImage('top.qed', { store, size: 256 * GiB, clusterSize: 4 * KiB, tableSize: 16, backingFile: 'base.qed', backingFormat: 'qed' });
  const write = async (device: BlockDevice, stripes: Stripes, byte: number): Promise<void> => {
    for (let i = stripes.first; i < stripes.clusters; i += stripes.every) await device.write(new Uint8Array(4 * KiB).fill(byte), stripes.from + i * 4 * KiB);
  };
  const base = await openDevice('base.qed', { store });
  await write(base, inBase, 2);
  await base.close();
  const top = await openDevice('top.qed', { store });
  await write(top, inTop, 1);
  return top;
}

test('a fully fragmented stretch after a long empty one is walked in steps of at most CHAIN_STATUS_MAX_RUNS runs, top and backing alike', async () => {
  // Every other cluster holds data: no two runs merge, so the stretch is one run per cluster.
  const fragmented = 3 * CHAIN_STATUS_MAX_RUNS;
  const top = await stripedChain({ from: 100 * GiB, first: 0, every: 2, clusters: fragmented }, { from: 200 * GiB, first: 0, every: 2, clusters: fragmented });
  const counted = countingRuns(top);
  const backing = countingRuns(top.backing!);
  Object.defineProperty(counted.device, 'backing', { value: backing.device });
  // Watch what each step holds: the generator yields a step's runs before asking for the next.
  const runs: ChainExtent[] = [];
  for await (const e of chainBlockStatus(counted.device, 0, 256 * GiB)) runs.push(e);
  // Empty, the backing stretch (its last gap merges into the empty run after it), empty, the top stretch, empty.
  assert.equal(runs.length, 1 + (fragmented - 1) + 1 + (fragmented - 1) + 1);
  assert.deepEqual([runs[0]!.start, runs[0]!.length, runs[0]!.depth], [0, 100 * GiB, 1]);
  assert.deepEqual([runs[1]!.start, runs[1]!.depth, runs[1]!.data], [100 * GiB, 1, true]);
  assert.deepEqual([runs.at(-1)!.start, runs.at(-1)!.depth, runs.at(-1)!.present], [200 * GiB + (fragmented - 1) * 4 * KiB, 1, false]);
  assert.ok(counted.largest() <= CHAIN_STATUS_MAX_RUNS && backing.largest() <= CHAIN_STATUS_MAX_RUNS);
  assert.equal(backing.largest(), CHAIN_STATUS_MAX_RUNS, 'the fragmented backing stretch fills whole steps');
  // Each stretch needs about fragmented / CHAIN_STATUS_MAX_RUNS steps, after the first steps
  // that double up from CHAIN_STATUS_FIRST_RUNS; the empty ones cost nothing extra.
  const rampSteps = Math.log2(CHAIN_STATUS_MAX_RUNS / CHAIN_STATUS_FIRST_RUNS);
  assert.ok(counted.calls() <= 12 + rampSteps, `${counted.calls()} requests of the top`);
  // The backing file is asked once per gap of the top's stretch (as QEMU asks per extent), and by steps for its own.
  assert.ok(backing.calls() <= 12 + rampSteps + fragmented / 2, `${backing.calls()} requests of the backing file`);
  assert.equal(counted.wholeRangeCalls() + backing.wholeRangeCalls(), 0);
  await top.close();
});

test('a step holds at most CHAIN_STATUS_MAX_RUNS runs across the layers of the chain', async () => {
  // Interleaved: top data, backing data, neither, ...: every run alternates layer or kind.
  const clusters = 2 * CHAIN_STATUS_MAX_RUNS;
  const top = await stripedChain({ from: 100 * GiB, first: 1, every: 3, clusters }, { from: 100 * GiB, first: 0, every: 3, clusters });
  const held: number[] = [];
  let pendingAnswers = 0;
  const watch = (device: BlockDevice): BlockDevice => new Proxy(device, {
    get(target, prop, receiver) {
      if (prop === 'layerStatusUpTo') return async (o: number, l: number, m: number) => { const r = await target.layerStatusUpTo!(o, l, m); pendingAnswers += r.length; return r; };
      if (prop === 'backing') return target.backing ? watch(target.backing) : null;
      return Reflect.get(target, prop, receiver);
    },
  });
  let yielded = 0;
  for await (const e of chainBlockStatus(watch(top), 0, 256 * GiB)) {
    void e;
    yielded++;
    if (pendingAnswers > 0) { held.push(pendingAnswers); pendingAnswers = 0; }
  }
  assert.equal(yielded, 1 + clusters + 1);
  // The runs the layers answered in one step: the top's (bounded) plus the backing's (the rest of the budget).
  assert.ok(held.length >= 2, 'the stretch took several steps');
  assert.ok(Math.max(...held) <= 2 * CHAIN_STATUS_MAX_RUNS, `one step was answered ${Math.max(...held)} runs`);
  await top.close();
});

test('the first runs of a fragmented walk come from a small first step, and the steps double from there', async () => {
  // Without the ramp, a copy could not start before a whole step of 8192 runs (8192 seeks in a raw file) was known.
  const clusters = 4 * CHAIN_STATUS_MAX_RUNS;
  const top = await stripedChain({ from: 0, first: 0, every: 2, clusters: 2 }, { from: 0, first: 0, every: 2, clusters });
  const asked: number[] = [];
  const watched = new Proxy(top, {
    get(target, prop, receiver) {
      if (prop === 'layerStatusUpTo') return (o: number, l: number, m: number) => { asked.push(m); return target.layerStatusUpTo!(o, l, m); };
      if (prop === 'backing') return null; // the top alone: every other cluster is data
      return Reflect.get(target, prop, receiver);
    },
  });
  const iterator = chainBlockStatus(watched, 0, 256 * GiB)[Symbol.asyncIterator]();
  const first = await iterator.next();
  assert.deepEqual([first.value?.start, first.value?.data], [0, true]);
  assert.deepEqual(asked, [CHAIN_STATUS_FIRST_RUNS], 'the first run came out of one request for at most the first step');
  for (let r = await iterator.next(); !r.done; r = await iterator.next()) void r;
  const ramp = [];
  for (let budget = CHAIN_STATUS_FIRST_RUNS; budget < CHAIN_STATUS_MAX_RUNS; budget *= 2) ramp.push(budget);
  assert.deepEqual(asked.slice(0, ramp.length + 1), [...ramp, CHAIN_STATUS_MAX_RUNS]);
  assert.ok(asked.every((m) => m <= CHAIN_STATUS_MAX_RUNS));
  await top.close();
});

test('a range past the end is refused', async () => {
  const store = new MemoryStore();
  await createImage('a.qed', { store, size: MiB });
  const device = await openDevice('a.qed', { store, readOnly: true });
  await assert.rejects(collect(chainBlockStatus(device, 0, 2 * MiB)), (err: unknown) => err instanceof QedError && err.code === 'RANGE');
  await device.close();
});

test('a sparse L2 table of 64 MiB clusters is walked by whole chunks: two runs, one request', async () => {
  const store = new MemoryStore();
  await createImage('wide.qed', { store, size: 64 * TiB, clusterSize: 64 * MiB, tableSize: 16 });
  const device = await openDevice('wide.qed', { store });
  await device.write(new Uint8Array(4096).fill(1), 0);
  const counted = countingRuns(device);
  const runs = await collect(chainBlockStatus(counted.device, 0, 64 * TiB));
  assert.deepEqual(runs.map((e) => [e.start, e.length, e.data]), [[0, 64 * MiB, true], [64 * MiB, 64 * TiB - 64 * MiB, false]]);
  assert.equal(counted.calls(), 1, 'two runs fit one step (strides of 8192 clusters made 128 requests)');
  await device.close();
});
