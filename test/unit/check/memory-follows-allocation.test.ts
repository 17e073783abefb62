// Check and repair hold memory for the clusters an image really references, never for the
// size its header claims or the size of its file (issue 15): on the largest geometry (64 MiB
// clusters, one-cluster tables of 2^23 entries each, a 512 TiB image, a 13.5 GiB file, sparse)
// with a handful of clusters far apart, a doubly referenced cluster and a leaked tail, check,
// check -r all and the repair a read-write open of the dirty image runs all stay within a
// few MiB of memory growth, sampled at every I/O they make. (A 1 TiB file of leaks is covered
// by reclaim.test.ts.)
import test from 'node:test';
import assert from 'node:assert/strict';
import { checkImage } from '../../../src/check/check.js';
import { readHeader } from '../../../src/engine/open.js';
import { MemoryStore, type MemoryFile } from '../../../src/io/memory-file.js';
import type { BlockFile } from '../../../src/io/block-file.js';
import { repairOnOpen } from '../../../src/ops/open.js';
import { CountingFile } from '../../support/counting-file.js';
import { F_NEED_CHECK, ImageBuilder } from '../../support/image-builder.js';

const MiB = 1024 * 1024;
const CS = 64 * MiB;
/** The growth allowed: a table piece and a copy piece (1 MiB each) and the used-cluster pages, with room to spare. */
const BOUND = 24 * MiB;

/**
 * The image's storage: a memory file that keeps no pages for zeros written over zeros, as a
 * sparse file system would not, so that the memory measured is the checker's and not the
 * 64 MiB clusters it copies (each holds one sector of data).
 */
function sparseStorage(file: MemoryFile): BlockFile {
  const CHUNK = 64 * 1024;
  const scratch = new Uint8Array(CHUNK);
  const zeros = Buffer.alloc(CHUNK);
  const zero = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).equals(zeros.subarray(0, b.length));
  return {
    ...file.view(false),
    write: async (buf, offset) => {
      for (let done = 0; done < buf.length;) {
        const n = Math.min(CHUNK - ((offset + done) % CHUNK), buf.length - done);
        const piece = buf.subarray(done, done + n);
        const now = scratch.subarray(0, n);
        file.readSync(now, offset + done);
        if (!(zero(piece) && zero(now))) file.writeSync(piece, offset + done);
        else if (offset + done + n > file.sizeSync) file.truncateSync(offset + done + n);
        done += n;
      }
    },
  };
}

/** Header, L1, two L2 tables and three data clusters spread over a file of 13.5 GiB; one data cluster named twice; a leaked cluster at the end. */
function hugeSparseImage(dirty: boolean): { store: MemoryStore; fileSize: number } {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 1, imageSize: 2 ** 49 });
  const entries = b.entriesPerTable; // 2^23
  const stamp = (at: number, value: number) => b.put(at, new Uint8Array(512).fill(value)); // data clusters hold a sector each: sparse
  const t0 = b.appendTable();
  b.setL1(0, t0);
  const d0 = b.append(1);
  stamp(d0, 0x11);
  b.setL2(t0, 0, d0);
  b.append(210); // 13 GiB of leaked space between
  const tLast = b.appendTable();
  b.setL1(entries - 1, tLast);
  const d1 = b.append(1);
  stamp(d1, 0x22);
  b.setL2(t0, entries - 1, d1);
  b.setL2(tLast, 12345, d0); // a second reference to d0
  b.append(1); // a leaked cluster at the end
  if (dirty) b.header.features |= F_NEED_CHECK;
  const store = new MemoryStore();
  b.addTo(store, '/huge.qed');
  return { store, fileSize: b.end };
}

test('check of a 512 TiB image with 64 MiB clusters and a 13 GiB sparse file: memory grows by a few MiB, not by the geometry', async () => {
  const { store, fileSize } = hugeSparseImage(false);
  assert.ok(fileSize > 13 * 1024 * MiB);
  const counting = new CountingFile(store.files.get('/huge.qed')!.view(true));
  const result = await checkImage(counting, (await readHeader(counting)).header);
  assert.equal(result.corruptions, 1, result.problems.join('; '));
  assert.ok(result.leaks >= 200, `${result.leaks} leaks`);
  console.log(`memory grew by ${(counting.peakMemoryGrowth / MiB).toFixed(1)} MiB`);
  assert.ok(counting.peakMemoryGrowth < BOUND, `memory grew by ${(counting.peakMemoryGrowth / MiB).toFixed(1)} MiB`);
});

test('check -r all of the same image: the copy and the compaction stay within a few MiB, and the image is clean after', async () => {
  const { store } = hugeSparseImage(false);
  const file = store.files.get('/huge.qed')!;
  const counting = new CountingFile(sparseStorage(file));
  const fixed = await checkImage(counting, (await readHeader(counting)).header, { fix: 'all' });
  assert.equal(fixed.corruptions, 0, fixed.problems.join('; '));
  console.log(`memory grew by ${(counting.peakMemoryGrowth / MiB).toFixed(1)} MiB`);
  assert.ok(counting.peakMemoryGrowth < BOUND, `memory grew by ${(counting.peakMemoryGrowth / MiB).toFixed(1)} MiB`);
  const again = await checkImage(file.view(true), (await readHeader(file.view(true))).header);
  assert.equal(again.corruptions + again.leaks, 0, again.problems.join('; '));
});

test('the repair a read-write open runs on the dirty image stays within a few MiB too', async () => {
  const { store } = hugeSparseImage(true);
  const file = store.files.get('/huge.qed')!;
  const counting = new CountingFile(sparseStorage(file));
  await repairOnOpen(counting, (await readHeader(counting)).header);
  console.log(`memory grew by ${(counting.peakMemoryGrowth / MiB).toFixed(1)} MiB`);
  assert.ok(counting.peakMemoryGrowth < BOUND, `memory grew by ${(counting.peakMemoryGrowth / MiB).toFixed(1)} MiB`);
  const after = await checkImage(file.view(true), (await readHeader(file.view(true))).header);
  assert.equal(after.corruptions, 0, after.problems.join('; '));
});
