// The engine's hot path: a read or an overwrite inside one data cluster whose tables are
// cached costs one file call and reads or writes exactly what the general path would. Every
// other request (across a cluster boundary, into zero or unallocated clusters, with tables
// not cached) takes the general path; a random workload over a tiny cache, so that chunks
// come and go, must read back what a plain byte array says.
import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { FileStore } from '../../../src/io/block-file.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';
import { ReadSpyStore } from '../../support/read-spy.js';

const KiB = 1024;
const CS = 64 * KiB;

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return out;
}

async function imageWithClusters(store: FileStore, size: number): Promise<void> {
  await createImage('hot.qed', { store, size, clusterSize: CS, tableSize: 4 });
}

test('inside one cached data cluster a read or an overwrite is one file call', async () => {
  const store = new ReadSpyStore(new MemoryStore());
  await imageWithClusters(store, 16 * CS);
  const device = await openDevice('hot.qed', { store });
  await device.write(pattern(CS, 1), 0); // cluster 0
  await device.write(pattern(CS, 2), 5 * CS); // cluster 5: not host-contiguous with cluster 0
  await device.read(new Uint8Array(4 * KiB), 0); // tables now cached

  const measure = async (what: () => Promise<void>): Promise<{ reads: number; writes: number }> => {
    const [r, w] = [store.reads, store.writes];
    await what();
    return { reads: store.reads - r, writes: store.writes - w };
  };
  const buf = new Uint8Array(4 * KiB);
  assert.deepEqual(await measure(() => device.read(buf, 8 * KiB)), { reads: 1, writes: 0 });
  assert.deepEqual(buf, pattern(CS, 1).subarray(8 * KiB, 12 * KiB));
  assert.deepEqual(await measure(() => device.read(buf, CS - 4 * KiB)), { reads: 1, writes: 0 }, 'the last 4 KiB of a cluster');
  assert.deepEqual(buf, pattern(CS, 1).subarray(CS - 4 * KiB));
  assert.deepEqual(await measure(() => device.write(new Uint8Array(4 * KiB).fill(0xab), 5 * CS + 12 * KiB)), { reads: 0, writes: 1 });
  const back = new Uint8Array(CS);
  await device.read(back, 5 * CS);
  const expected = pattern(CS, 2);
  expected.fill(0xab, 12 * KiB, 16 * KiB);
  assert.deepEqual(back, expected);
  await device.close();
});

test('across a cluster boundary, and into zero or unallocated clusters, the general path answers', async () => {
  const store = new ReadSpyStore(new MemoryStore());
  await imageWithClusters(store, 16 * CS);
  const device = await openDevice('hot.qed', { store });
  await device.write(pattern(CS, 1), 0);
  await device.write(pattern(CS, 2), 5 * CS);
  await device.write(pattern(CS, 3), 6 * CS); // host-contiguous after cluster 5
  await device.writeZeroes(2 * CS, CS); // a zero cluster
  await device.read(new Uint8Array(512), 0);

  const across = new Uint8Array(8 * KiB);
  let reads = store.reads;
  await device.read(across, 6 * CS - 4 * KiB);
  assert.equal(store.reads - reads, 1, 'two host-contiguous clusters: one merged read');
  assert.deepEqual(across.subarray(0, 4 * KiB), pattern(CS, 2).subarray(CS - 4 * KiB));
  assert.deepEqual(across.subarray(4 * KiB), pattern(CS, 3).subarray(0, 4 * KiB));

  const gap = new Uint8Array(8 * KiB).fill(0xee);
  reads = store.reads;
  await device.read(gap, CS - 4 * KiB);
  assert.equal(store.reads - reads, 1, 'data then unallocated: one read, zeros filled');
  assert.deepEqual(gap.subarray(0, 4 * KiB), pattern(CS, 1).subarray(CS - 4 * KiB));
  assert.ok(gap.subarray(4 * KiB).every((b) => b === 0));

  const zero = new Uint8Array(4 * KiB).fill(0xee);
  reads = store.reads;
  await device.read(zero, 2 * CS + 4 * KiB);
  assert.equal(store.reads - reads, 0, 'a zero cluster is never read');
  assert.ok(zero.every((b) => b === 0));

  // A write into the zero cluster allocates (it must not be taken for an overwrite).
  await device.write(new Uint8Array(4 * KiB).fill(0x5a), 2 * CS + 4 * KiB);
  const after = new Uint8Array(CS);
  await device.read(after, 2 * CS);
  assert.ok(after.every((b, i) => b === (i >= 4 * KiB && i < 8 * KiB ? 0x5a : 0)), 'the rest of the zero cluster still reads zeros');
  await device.close();
});

test('readIfData reads clusters that lie back to back in one file call and leaves everything else to read', async () => {
  const store = new ReadSpyStore(new MemoryStore());
  await imageWithClusters(store, 16 * CS);
  const device = await openDevice('hot.qed', { store });
  await device.write(pattern(3 * CS, 1), 0); // clusters 0..2, host-contiguous
  await device.write(pattern(CS, 2), 5 * CS); // cluster 5
  await device.write(pattern(CS, 3), 3 * CS); // cluster 3: allocated after 5, so not after 2 in the file
  await device.writeZeroes(8 * CS, CS);
  await device.read(new Uint8Array(512), 0); // tables now cached
  assert.ok(device.readIfData, 'a QED image has the fast path');

  const buf = new Uint8Array(2 * CS + 8 * KiB);
  const reads = store.reads;
  await device.readIfData(buf, 4 * KiB);
  assert.equal(store.reads - reads, 1, 'three clusters back to back: one file call');
  assert.deepEqual(buf, pattern(3 * CS, 1).subarray(4 * KiB, 4 * KiB + buf.length));

  const before = store.reads;
  assert.equal(device.readIfData(new Uint8Array(2 * CS), 2 * CS), undefined, 'clusters 2 and 3 are not back to back in the file');
  assert.equal(device.readIfData(new Uint8Array(2 * CS), 5 * CS), undefined, 'cluster 6 is unallocated');
  assert.equal(device.readIfData(new Uint8Array(4 * KiB), 8 * CS), undefined, 'a zero cluster');
  assert.equal(device.readIfData(new Uint8Array(4 * KiB), 16 * CS - 2 * KiB), undefined, 'past the end: read reports it');
  assert.equal(store.reads, before, 'a refusal reads nothing');
  await device.close();
  assert.equal(device.readIfData(new Uint8Array(4 * KiB), 0), undefined, 'closed: read reports it');
});

test('any mix of reads, writes and zeroing over a cache that keeps evicting reads back as a byte array says', async () => {
  const size = 40 * CS; // 64 KiB clusters, 4-cluster tables: one L2 table covers 2 GiB, so use many small requests
  await fc.assert(fc.asyncProperty(
    fc.array(fc.record({
      op: fc.constantFrom('read', 'write', 'zero'),
      cluster: fc.nat(39),
      within: fc.constantFrom(0, 512, 4 * KiB, CS - 4 * KiB, CS - 512),
      length: fc.constantFrom(512, 4 * KiB, CS - 4 * KiB, CS, CS + 4 * KiB, 3 * CS),
    }), { minLength: 1, maxLength: 40 }),
    async (ops) => {
      const store = new MemoryStore();
      await imageWithClusters(store, size);
      // The smallest cache: the L1 chunk and L2 chunks are evicted and reloaded as the workload goes.
      const device = await openDevice('hot.qed', { store, cacheBytes: 0 });
      const model = new Uint8Array(size);
      try {
        for (const [i, o] of ops.entries()) {
          const offset = o.cluster * CS + o.within;
          const length = Math.min(o.length, size - offset);
          if (length <= 0) continue;
          if (o.op === 'write') {
            const data = pattern(length, i);
            await device.write(data, offset);
            model.set(data, offset);
          } else if (o.op === 'zero') {
            await device.writeZeroes(offset, length);
            model.fill(0, offset, offset + length);
          } else {
            const got = new Uint8Array(length);
            await device.read(got, offset);
            assert.deepEqual(got, model.subarray(offset, offset + length), `read ${offset}+${length} after op ${i}`);
            const direct = new Uint8Array(length);
            const fast = device.readIfData?.(direct, offset);
            if (fast) {
              await fast;
              assert.deepEqual(direct, got, `readIfData ${offset}+${length} after op ${i}`);
            }
          }
        }
        const all = new Uint8Array(size);
        await device.read(all, 0);
        assert.ok(Buffer.compare(all, model) === 0, 'the whole image');
      } finally {
        await device.close();
      }
    }), { numRuns: 60 });
});
