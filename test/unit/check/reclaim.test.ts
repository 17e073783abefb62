// Leak reclaim (src/check/reclaim.ts) on images built independently of our encoders: it must
// converge (a leak low in the file under thousands of clusters goes in one round), give back
// every leaked cluster whatever the layout, leave what the guest sees unchanged, and keep
// its memory to the clusters in use, not the size of the file.
import test from 'node:test';
import assert from 'node:assert/strict';
import type { MemoryFile } from '../../../src/io/memory-file.js';
import { readHeader } from '../../../src/engine/open.js';
import { checkImage } from '../../../src/check/check.js';
import { reclaimLeaks } from '../../../src/check/reclaim.js';
import { ImageBuilder } from '../../support/image-builder.js';
import { guestClusters } from '../../support/guest-clusters.js';
import { CountingFile } from '../../support/counting-file.js';
import { dataFor, lowLeakImage, randomLeakyImage, tableWallImage } from '../../support/leaky-images.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function checkOf(file: MemoryFile) {
  const view = file.view(true);
  return checkImage(view, (await readHeader(view)).header);
}

/** Reclaim through a counting file; asserts the guest sees the same before and after and nothing is left leaked. */
async function reclaimAndVerify(file: MemoryFile): Promise<CountingFile> {
  const before = await guestClusters(file.view(true));
  const found = await checkOf(file);
  assert.equal(found.corruptions, 0, found.problems.join('; '));
  const { header } = await readHeader(file.view(true));
  const counting = new CountingFile(file.view(false));
  await reclaimLeaks(counting, header);
  const after = await checkOf(file);
  assert.deepEqual({ corruptions: after.corruptions, leaks: after.leaks }, { corruptions: 0, leaks: 0 }, after.problems.join('; '));
  assert.deepEqual(await guestClusters(file.view(true)), before, 'the guest sees the same clusters');
  return counting;
}

test('one leaked cluster under 5000 data clusters is reclaimed in one round: the file loses one cluster, with 3 flushes and 1 scan of the tables', async () => {
  const { file, builder } = lowLeakImage(5000);
  const sizeBefore = file.sizeSync;
  assert.equal((await checkOf(file)).leaks, 1);

  const counting = await reclaimAndVerify(file);
  assert.equal(file.sizeSync, sizeBefore - builder.cs, 'exactly the leaked cluster is given back');
  assert.equal(counting.flushes, 3, 'copy, switch, truncate');
  const tableBytes = (1 + 3) * builder.tableBytes; // the L1 table and three L2 tables
  assert.ok(counting.bytesRead <= tableBytes + builder.cs, `read ${counting.bytesRead} bytes: more than the tables once and one cluster`);
});

test('a leaked cluster under a wall of L2 tables is given back: the tables are parked past the end, then brought down packed', async () => {
  const { file, builder } = tableWallImage();
  const sizeBefore = file.sizeSync;
  assert.equal((await checkOf(file)).leaks, 1);
  await reclaimAndVerify(file);
  assert.equal(file.sizeSync, sizeBefore - builder.cs);
});

test('random layouts of tables, data and leaks (single clusters, table-sized runs, orphaned entries) are compacted to no leak at all, in at most five rounds', async () => {
  for (let seed = 1; seed <= 100; seed++) {
    try {
      const counting = await reclaimAndVerify(randomLeakyImage(seed).file);
      // A round flushes three times; a park and its return take two rounds.
      assert.ok(counting.flushes <= 5 * 3, `${counting.flushes} flushes`);
    } catch (err) {
      assert.fail(`seed ${seed}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
});

test('a 1 TiB file holding one cluster at its end: reclaim gives back the 16 Mi leaked clusters below it with memory growth under 32 MiB', async () => {
  const cs = 64 * KiB;
  const b = new ImageBuilder({ clusterSize: cs, tableSize: 4, imageSize: 64 * MiB });
  const table = b.appendTable();
  b.setL1(0, table);
  const last = 1024 * 1024 * MiB - cs;
  b.put(last, dataFor(7, cs));
  b.setL2(table, 7, last);
  const file = b.toFile();
  const before = await guestClusters(file.view(true));

  const counting = new CountingFile(file.view(false));
  const result = await checkImage(counting, (await readHeader(counting)).header, { fix: 'leaks' });
  assert.equal(result.leaksFixed, 1024 * 1024 * MiB / cs - 10, 'every cluster but the header, L1, L2 and the data cluster');
  assert.equal(result.leaks, 0);
  assert.equal(file.sizeSync, 10 * cs, 'the data cluster moved down next to its table');
  assert.deepEqual(await guestClusters(file.view(true)), before);
  assert.ok(counting.peakMemoryGrowth < 32 * MiB, `memory grew by ${(counting.peakMemoryGrowth / MiB).toFixed(1)} MiB`);
});
