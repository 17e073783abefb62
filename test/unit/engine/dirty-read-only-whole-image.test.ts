// A dirty image opened read-only reads as its repair will leave it, also where only a check
// of the whole image can tell what the repair does (found by the image fuzzer, which compares
// the two views of every dirty mutated image):
//   - two L1 entries naming one L2 table: the repair keeps the first and clears the second,
//     so the second's range reads as unallocated (before the fix: the table's data);
//   - an L2 entry naming an L2 table already walked (here its own): the repair clears it
//     rather than copying a table it changes as it goes, so it reads as unallocated (before
//     the fix: a copy of the table made after the repair had changed it, while the read-only
//     open read the table as it was).
// A dry run of the repair at open lists such entries (ops/open.ts planRepairOnOpen); the
// engine reads them as unallocated.
import test from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { openDevice } from '../../../src/ops/open.js';
import { F_NEED_CHECK, ImageBuilder } from '../../support/image-builder.js';

const CS = 4096;
const MiB = 1024 * 1024;

/** Guest bytes at the given offsets, read-only first, then after a read-write open repaired the image. */
async function bothViews(b: ImageBuilder, offsets: number[]): Promise<{ before: Uint8Array[]; after: Uint8Array[] }> {
  b.header.features |= F_NEED_CHECK;
  const store = new MemoryStore();
  store.add('/d.qed', b.toFile('/d.qed'));
  const read = async (readOnly: boolean) => {
    const device = await openDevice('/d.qed', { store, readOnly });
    try {
      return await Promise.all(offsets.map(async (at) => { const buf = new Uint8Array(CS); await device.read(buf, at); return buf; }));
    } finally {
      await device.close();
    }
  };
  const before = await read(true);
  const after = await read(false);
  return { before, after };
}

test('two L1 entries naming one L2 table: read-only, the second reads as the repair leaves it (unallocated)', async () => {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 1, imageSize: 4 * MiB });
  b.mapData(0, 0x11);
  b.mapData(512 + 3, 0x33); // L1[1]'s table, guest cluster 3 of it
  b.setL1(0, b.tableOf(1)); // L1[0] now names L1[1]'s table too
  const offsets = [3 * CS, (512 + 3) * CS];
  const { before, after } = await bothViews(b, offsets);
  assert.deepEqual(after[1], new Uint8Array(CS), 'the repair cleared the second entry naming the table');
  for (const i of offsets.keys()) assert.deepEqual(before[i], after[i], `guest offset ${offsets[i]}`);
});

test('an L2 entry naming its own table, with another entry of that table invalid: read-only reads it as the repair leaves it', async () => {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 1, imageSize: 4 * MiB });
  b.mapData(0, 0x11);
  b.mapData(1, 0x22);
  const table = b.tableOf(0);
  b.setL2(table, 0, table); // guest cluster 0 names the table itself
  b.setL2(table, 4, 0x100); // misaligned: the repair clears it, changing the table's bytes
  const offsets = [0, CS];
  const { before, after } = await bothViews(b, offsets);
  assert.deepEqual(after[0], new Uint8Array(CS), 'the repair cleared the entry naming a table');
  assert.deepEqual(after[1], new Uint8Array(CS).fill(0x22));
  for (const i of offsets.keys()) assert.deepEqual(before[i], after[i], `guest offset ${offsets[i]}`);
});
