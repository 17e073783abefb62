// Targeted races on allocation: many requests that all want to allocate the same cluster, or
// the same empty L2 table, at once. QEMU serializes allocating writes; we run them in
// parallel, so these are the cases where a cluster could be allocated twice, a table linked
// twice, or a write lost. Afterwards: no cluster or table allocated twice (checkImage finds
// no corruption and no leak, and the counts are exact), and every byte is an allowed outcome.
import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkImage } from '../../src/check/check.js';
import type { BlockDevice } from '../../src/engine/device.js';
import { readHeader } from '../../src/engine/open.js';
import { createImage } from '../../src/ops/create.js';
import { openDevice } from '../../src/ops/open.js';
import { JitterStore } from '../support/jitter-store.js';
import { DiskModel, pattern } from '../support/model.js';

interface Setup { store: JitterStore; device: BlockDevice; cs: number; tableSize: number; model: DiskModel }

const geometry = fc.record({
  clusterShift: fc.integer({ min: 12, max: 16 }),
  tableSize: fc.constantFrom(1, 2, 4, 16),
  withBacking: fc.boolean(),
  cacheBytes: fc.constantFrom(undefined, 1, 64 * 1024),
  jitterSeed: fc.nat(),
});

type Geometry = { clusterShift: number; tableSize: number; withBacking: boolean; cacheBytes: number | undefined; jitterSeed: number };

/** An empty image of 64 clusters (the last one partial), optionally over a raw file of 0x5a bytes. */
async function setUp(g: Geometry): Promise<Setup> {
  const store = new JitterStore(g.jitterSeed);
  const cs = 2 ** g.clusterShift;
  const size = 64 * cs - 1536;
  let backingModel: DiskModel | null = null;
  if (g.withBacking) {
    const raw = store.memory.add('base.raw');
    const bytes = new Uint8Array(size).fill(0x5a);
    raw.writeSync(bytes, 0);
    backingModel = new DiskModel(size);
    backingModel.write(0, bytes);
  }
  await createImage('top.qed', {
    store, size, clusterSize: cs, tableSize: g.tableSize,
    backingFile: g.withBacking ? 'base.raw' : undefined, backingFormat: g.withBacking ? 'raw' : undefined,
  });
  const device = await openDevice('top.qed', { store, cacheBytes: g.cacheBytes });
  return { store, device, cs, tableSize: g.tableSize, model: DiskModel.overlay(size, backingModel) };
}

/** Close, then judge the file: clean, NEED_CHECK clear, and exactly the expected allocation. */
async function closeAndCheck(s: Setup, dataClusters: number): Promise<void> {
  await s.device.close();
  const file = s.store.memory.files.get('top.qed')!;
  const info = await readHeader(file.view(true));
  assert.equal(info.header.features & 0x2n, 0n, 'NEED_CHECK clear after close');
  const result = await checkImage(file.view(true), info.header);
  assert.equal(result.corruptions, 0, `no cluster referenced twice: ${result.problems.join('; ')}`);
  assert.equal(result.leaks, 0, 'no cluster allocated and then dropped');
  assert.equal(result.allocatedClusters, dataClusters, 'one data cluster per written guest cluster');
  // All writes fall under L1 entry 0: one L2 table if anything was allocated, so the file is
  // header + L1 + L2 + data clusters.
  const tables = dataClusters > 0 ? 1 : 0;
  const l1 = new Uint8Array(s.tableSize * s.cs);
  file.readSync(l1, s.cs);
  const view = new DataView(l1.buffer);
  let linked = 0;
  for (let i = 0; i < l1.length / 8; i++) if (view.getBigUint64(i * 8, true) !== 0n) linked++;
  assert.equal(linked, tables, 'L2 tables linked');
  assert.equal(file.sizeSync, (1 + s.tableSize + tables * s.tableSize + dataClusters) * s.cs, 'file = header + L1 + L2 + data clusters');
}

async function readBack(device: BlockDevice, offset: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  await device.read(buf, offset);
  return buf;
}

test('concurrent writes of one range of one unallocated cluster: one allocation, each sector from one writer', async () => {
  let cases = 0;
  await fc.assert(fc.asyncProperty(
    geometry,
    fc.integer({ min: 2, max: 16 }),
    fc.nat(63), fc.nat(), fc.nat(), fc.boolean(),
    async (g, writers, clusterIndex, startSeed, lengthSeed, sameBytes) => {
      cases++;
      const s = await setUp(g);
      const clusterStart = clusterIndex * s.cs;
      const clusterEnd = Math.min(clusterStart + s.cs, s.model.size);
      const offset = clusterStart + (startSeed % (clusterEnd - clusterStart));
      const length = 1 + (lengthSeed % (clusterEnd - offset));
      const datas = Array.from({ length: writers }, (_, i) => pattern(length, sameBytes ? 77 : 1000 + i));
      await Promise.all(datas.map((d) => s.device.write(d, offset)));

      // Each 512-byte guest sector holds one writer's bytes where the writes cover it and
      // the old content around them; the rest of the cluster keeps its old content.
      const got = await readBack(s.device, clusterStart, clusterEnd - clusterStart);
      const old = s.model.read(clusterStart, clusterEnd - clusterStart);
      for (let sector = clusterStart; sector < clusterEnd; sector += 512) {
        const from = Math.max(sector, offset);
        const to = Math.min(sector + 512, offset + length, clusterEnd);
        const actual = got.subarray(sector - clusterStart, Math.min(sector + 512, clusterEnd) - clusterStart);
        const candidates = from < to ? datas.map((d) => {
          const expect = old.slice(sector - clusterStart, Math.min(sector + 512, clusterEnd) - clusterStart);
          expect.set(d.subarray(from - offset, to - offset), from - sector);
          return expect;
        }) : [old.subarray(sector - clusterStart, Math.min(sector + 512, clusterEnd) - clusterStart)];
        assert.ok(candidates.some((c) => Buffer.compare(c, actual) === 0), `sector at ${sector} is not any writer's version`);
      }
      await closeAndCheck(s, 1);
    },
  ), { numRuns: 250, includeErrorInReport: true });
  console.log(`same-range races: ${cases} cases`);
});

test('concurrent first writes into one empty L2 table: one table, one cluster per guest cluster, nothing lost', async () => {
  let cases = 0;
  // Disjoint pieces, several per cluster and several clusters, all under L1 entry 0.
  const pieces = fc.array(fc.record({ cluster: fc.nat(63), slot: fc.nat(7), zero: fc.boolean(), seed: fc.nat() }), { minLength: 2, maxLength: 24 });
  await fc.assert(fc.asyncProperty(geometry, pieces, async (g, raw) => {
    cases++;
    const s = await setUp(g);
    const eighth = s.cs / 8;
    const seen = new Set<string>();
    const ops = raw.filter((p) => {
      const key = `${p.cluster}:${p.slot}`;
      if (seen.has(key) || (p.cluster * 8 + p.slot + 1) * eighth > s.model.size) return false;
      seen.add(key);
      return true;
    });
    await Promise.all(ops.map((p) => {
      const offset = p.cluster * s.cs + p.slot * eighth;
      return p.zero ? s.device.writeZeroes(offset, eighth) : s.device.write(pattern(eighth, p.seed), offset);
    }));
    for (const p of ops) {
      const offset = p.cluster * s.cs + p.slot * eighth;
      if (p.zero) s.model.writeZeroes(offset, eighth); else s.model.write(offset, pattern(eighth, p.seed));
    }
    const got = await readBack(s.device, 0, s.model.size);
    assert.ok(Buffer.compare(got, s.model.read(0, s.model.size)) === 0, 'every write and zero-write is there, nothing else changed');
    // A zero-write of part of a cluster allocates only where the old content was not zeros.
    const allocated = new Set<number>();
    for (const p of ops) if (!p.zero || g.withBacking) allocated.add(p.cluster);
    await closeAndCheck(s, allocated.size);
  }), { numRuns: 250, includeErrorInReport: true });
  console.log(`same-table races: ${cases} cases`);
});
