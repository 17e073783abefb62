// An L1 entry whose L2 table overlaps clusters already in use (the L1 table itself, another
// L2 table, data clusters) cannot be repaired by a copy: repair clears it, so that the image
// checks clean afterwards and a dirty image with such an entry opens read-write (found by the
// image fuzzer: before the fix, check -r all left the corruption and such an image could never
// be opened read-write).
import test from 'node:test';
import assert from 'node:assert/strict';
import { checkImage } from '../../../src/check/check.js';
import { readHeader } from '../../../src/engine/open.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { openDevice } from '../../../src/ops/open.js';
import { F_NEED_CHECK, ImageBuilder } from '../../support/image-builder.js';

const CS = 4096;

/** 4 KiB clusters, 2-cluster tables: L1 at 0x1000, L2 T0 at 0x3000, data 0x11 at 0x5000, 0x22 at 0x6000. */
function base(): ImageBuilder {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 2, imageSize: 8 * 1024 * 1024 });
  b.mapData(0, 0x11);
  b.mapData(1, 0x22);
  b.append(2); // room after the data, so that a table aimed at a data cluster lies inside the file
  return b;
}

const cases: Array<{ name: string; aim: (b: ImageBuilder) => number }> = [
  { name: 'the L1 table itself', aim: (b) => b.l1Offset },
  { name: 'the other L2 table', aim: (b) => b.tableOf(0) },
  { name: 'a data cluster', aim: (b) => b.tableOf(0) + 2 * CS },
];

for (const c of cases) {
  test(`an L1 entry whose table overlaps ${c.name}: check -r all clears it and nothing remains to repair`, async () => {
    const b = base();
    b.setL1(1, c.aim(b));
    const store = new MemoryStore();
    const file = store.add('/o.qed', b.toFile('/o.qed'));
    const { header } = await readHeader(file);
    const first = await checkImage(file, header);
    assert.ok(first.corruptions > 0, 'the overlap is found');
    const fixed = await checkImage(file, header, { fix: 'all' });
    assert.ok(fixed.problems.some((p) => p.includes('overlaps') && p.includes('cleared')), fixed.problems.join('; '));
    const again = await checkImage(file, (await readHeader(file)).header);
    assert.equal(again.corruptions, 0, again.problems.join('; '));
  });

  test(`a dirty image with an L1 entry whose table overlaps ${c.name} opens read-write, keeps its other data and takes writes`, async () => {
    const b = base();
    b.setL1(1, c.aim(b));
    b.header.features |= F_NEED_CHECK;
    const store = new MemoryStore();
    const file = store.add('/o.qed', b.toFile('/o.qed'));
    const device = await openDevice('/o.qed', { store });
    try {
      const first = new Uint8Array(CS);
      await device.read(first, 0);
      assert.deepEqual(first, new Uint8Array(CS).fill(0x11), 'guest cluster 0 keeps its data');
      await device.write(new Uint8Array(CS).fill(0x99), 4 * 1024 * 1024);
    } finally {
      await device.close();
    }
    const after = await checkImage(file, (await readHeader(file)).header);
    assert.equal(after.corruptions, 0, after.problems.join('; '));
  });
}
