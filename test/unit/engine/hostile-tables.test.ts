// Hostile L1 and L2 entries (reliability.md, "Hostile images / Tables"). Where the engine can
// tell from the entry alone (misaligned, reserved low bits, inside the header, past the end of
// the file, on the L1 table, beyond 2^53), every request touching the range is refused with a
// FORMAT error naming the entry's host offset, nothing is written, and the rest of the image
// still works. Where it cannot tell without a map of every cluster in the file (two entries
// sharing a cluster, an entry aimed at an L2 table), the checker must find it, with the counts
// QEMU's qed-check.c gives (NOTES.md §5).
import test from 'node:test';
import assert from 'node:assert/strict';
import { checkImage } from '../../../src/check/check.js';
import { QedError } from '../../../src/base/errors.js';
import { readHeader } from '../../../src/engine/open.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { openDevice } from '../../../src/ops/open.js';
import { ImageBuilder } from '../../support/image-builder.js';

const CS = 0x10000;
const GiB = 2 ** 30;

/**
 * QEMU's default geometry (64 KiB clusters, 4-cluster tables), 4 GiB so that L1[1] is in
 * range. Header 0, L1 0x10000, L2 table T at 0x50000 (4 clusters) for L1[0], guest cluster 0
 * at 0x90000 (0x11), guest cluster 1 at 0xa0000 (0x22); the file ends at 0xb0000.
 */
function base(headerSize = 1): ImageBuilder {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, headerSize, imageSize: 4 * GiB });
  b.mapData(0, 0x11);
  b.mapData(1, 0x22);
  return b;
}

interface Expected { corruptions: number; leaks: number }

async function checkCounts(b: ImageBuilder, expected: Expected): Promise<void> {
  const file = b.toFile().view(true);
  const { header } = await readHeader(file);
  const result = await checkImage(file, header);
  assert.deepEqual({ corruptions: result.corruptions, leaks: result.leaks }, expected, result.problems.join('; '));
}

interface Detectable {
  name: string;
  build: () => ImageBuilder;
  /** Guest offset of the affected range. */
  guestOffset: number;
  /** Host offset of the hostile entry. */
  entryAt: (b: ImageBuilder) => number;
  message: RegExp;
  check: Expected;
}

const l2Entry2 = (b: ImageBuilder) => b.tableOf(0) + 2 * 8;
const l1Entry1 = (b: ImageBuilder) => b.l1Offset + 8;
const L2_MSG = /L2 entry at 0x[0-9a-f]+ holds invalid cluster offset/;
const L1_MSG = /L1 entry at 0x[0-9a-f]+ holds invalid L2 table offset/;

function l2(name: string, value: (b: ImageBuilder) => bigint | number, check: Expected, headerSize = 1, extra = false): Detectable {
  return {
    name: `L2 entry ${name}`,
    build: () => {
      const b = base(headerSize);
      if (extra) b.appendData(0x44); // the cluster the broken entry was meant to name: now a leak
      return b.setL2(b.tableOf(0), 2, value(b));
    },
    guestOffset: 2 * CS, entryAt: l2Entry2, message: L2_MSG, check,
  };
}

function l1(name: string, value: (b: ImageBuilder) => bigint | number, check: Expected, headerSize = 1): Detectable {
  return {
    name: `L1 entry ${name}`,
    build: () => { const b = base(headerSize); return b.setL1(1, value(b)); },
    guestOffset: 2 * GiB + 3 * CS, entryAt: l1Entry1, message: L1_MSG, check,
  };
}

const detectable: Detectable[] = [
  l2('misaligned', (b) => b.end - CS + 0x200, { corruptions: 1, leaks: 1 }, 1, true),
  l2('with a reserved low bit set', (b) => b.end - CS + 1, { corruptions: 1, leaks: 1 }, 1, true),
  l2('with all three low bits set', (b) => b.end - CS + 7, { corruptions: 1, leaks: 1 }, 1, true),
  l2('pointing into the header (misaligned)', () => 0x8000, { corruptions: 1, leaks: 0 }),
  l2('pointing into a 2-cluster header (aligned)', () => 0x10000, { corruptions: 1, leaks: 0 }, 2),
  l2('past the end of the file', () => 0x200000, { corruptions: 1, leaks: 0 }),
  l2('at the L1 table', (b) => b.l1Offset, { corruptions: 1, leaks: 0 }),
  l2('at the last cluster of the L1 table', (b) => b.l1Offset + 3 * CS, { corruptions: 1, leaks: 0 }),
  l2('beyond 2^53', () => 0xfff0000000000000n, { corruptions: 1, leaks: 0 }),
  l1('misaligned, inside the header', () => 0x8000, { corruptions: 1, leaks: 0 }),
  l1('of 1 (reserved low bit)', () => 1, { corruptions: 1, leaks: 0 }),
  l1('pointing into a 2-cluster header (aligned)', () => 0x10000, { corruptions: 1, leaks: 0 }, 2),
  l1('past the end of the file', () => 0x1000000, { corruptions: 1, leaks: 0 }),
  // The first cluster is inside the file, the table's last cluster is not.
  l1('whose table runs past the end of the file', (b) => b.end - CS, { corruptions: 1, leaks: 0 }),
  // QEMU counts one corruption per table cluster already in use: all 4 of the L1 table.
  l1('at the L1 table itself', (b) => b.l1Offset, { corruptions: 4, leaks: 0 }),
  l1('beyond 2^53', () => 0xfff0000000000000n, { corruptions: 1, leaks: 0 }),
];

async function openBuilt(b: ImageBuilder): Promise<{ store: MemoryStore; before: Uint8Array }> {
  const store = new MemoryStore();
  b.addTo(store, 'hostile.qed');
  return { store, before: b.toBytes() };
}

function assertFormatError(entryHost: number, message: RegExp) {
  return (err: unknown): true => {
    assert.ok(err instanceof QedError, String(err));
    assert.equal(err.code, 'FORMAT');
    assert.match(err.message, message);
    assert.equal(err.hostOffset, entryHost, 'the error names the entry');
    return true;
  };
}

for (const c of detectable) {
  test(`${c.name}: requests on its range are refused with a FORMAT error, nothing is written, the rest still reads`, async () => {
    const b = c.build();
    const { store, before } = await openBuilt(b);
    const device = await openDevice('hostile.qed', { store });
    const refused = assertFormatError(c.entryAt(b), c.message);
    await assert.rejects(device.read(new Uint8Array(4096), c.guestOffset), refused);
    await assert.rejects(device.write(new Uint8Array(4096).fill(0xee), c.guestOffset), refused);
    await assert.rejects(device.writeZeroes(c.guestOffset, CS), refused);
    await assert.rejects(device.layerStatus(c.guestOffset, 4096), refused);
    // A read that starts in a healthy range and runs into the hostile one is refused as a whole.
    await assert.rejects(device.read(new Uint8Array(2 * CS), c.guestOffset - CS), refused);
    const healthy = new Uint8Array(CS);
    await device.read(healthy, 0);
    assert.deepEqual(healthy, new Uint8Array(CS).fill(0x11), 'guest cluster 0 still reads');
    await device.close();
    const after = new Uint8Array(store.files.get('hostile.qed')!.sizeSync);
    store.files.get('hostile.qed')!.readSync(after, 0);
    assert.ok(Buffer.compare(after, before) === 0, 'the file is unchanged');
  });

  test(`${c.name}: checkImage counts it as QEMU does (${c.check.corruptions} corruptions, ${c.check.leaks} leaks)`, async () => {
    await checkCounts(c.build(), c.check);
  });
}

// Cases the engine does not detect: telling them needs a map of every cluster the image
// references (what checkImage builds), not a look at one entry. The engine follows such an
// entry; the checker, which runs on every read-write open of a dirty image, must find it.

test('the same data cluster referenced by two L2 entries: checkImage finds 1 corruption (QEMU: 1)', async () => {
  const b = base();
  b.setL2(b.tableOf(0), 2, 0x90000); // = guest cluster 0's cluster
  await checkCounts(b, { corruptions: 1, leaks: 0 });
});

test('an L2 table that is also a data cluster (an entry naming its own table): 1 corruption', async () => {
  const b = base();
  b.setL2(b.tableOf(0), 2, b.tableOf(0));
  await checkCounts(b, { corruptions: 1, leaks: 0 });
});

test('an L2 entry naming another L2 table: 1 corruption, and that table\'s data cluster leaks (QEMU skips the table)', async () => {
  const b = base();
  b.mapData(32768, 0x33); // guest 2 GiB: L2 table T2 for L1[1], and its data cluster
  b.setL2(b.tableOf(0), 2, b.tableOf(1));
  await checkCounts(b, { corruptions: 1, leaks: 1 });
});

test('two L1 entries naming one L2 table: one corruption per table cluster (4)', async () => {
  const b = base();
  b.setL1(1, b.tableOf(0));
  await checkCounts(b, { corruptions: 4, leaks: 0 });
});

test('an L2 entry past the end of the file stays invalid after allocations grow the file past it', async () => {
  // At open the entry is past the end of the file and refused. Allocations then append
  // clusters; once the file reaches the entry's offset the entry names a cluster that was
  // allocated for another guest cluster. Following it then would read another guest
  // cluster's data, and a write through it would overwrite that data (QEMU has the same hole:
  // qed_check_cluster_offset compares with a file size that grows with allocations).
  const b = base();
  const beyond = b.end + 2 * CS;
  b.setL2(b.tableOf(0), 5, beyond);
  const { store } = await openBuilt(b);
  const device = await openDevice('hostile.qed', { store });
  try {
    const refused = assertFormatError(b.tableOf(0) + 5 * 8, L2_MSG);
    await assert.rejects(device.read(new Uint8Array(512), 5 * CS), refused);
    // Three allocating writes: the clusters at b.end, b.end + CS and b.end + 2 * CS.
    for (const guestCluster of [10, 11, 12]) await device.write(new Uint8Array(CS).fill(guestCluster), guestCluster * CS);
    await assert.rejects(device.read(new Uint8Array(512), 5 * CS), refused, 'the entry still names no cluster of its own');
    await assert.rejects(device.write(new Uint8Array(512).fill(0xee), 5 * CS), refused);
    const other = new Uint8Array(CS);
    await device.read(other, 12 * CS);
    assert.deepEqual(other, new Uint8Array(CS).fill(12), 'guest cluster 12 keeps its data');
  } finally {
    await device.close();
  }
});

test('an L1 entry past the end of the file stays invalid after a new L2 table is allocated at its offset', async () => {
  // The same hole one level up: once an allocation puts another range's new L2 table where the
  // hostile L1 entry points, the two guest ranges share one table and writes through one
  // change the other.
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, imageSize: 8 * GiB });
  b.mapData(0, 0x11);
  b.setL1(1, b.end + CS);
  const { store } = await openBuilt(b);
  const device = await openDevice('hostile.qed', { store });
  try {
    const refused = assertFormatError(b.l1Offset + 8, L1_MSG);
    await assert.rejects(device.read(new Uint8Array(512), 2 * GiB), refused);
    await device.write(new Uint8Array(512).fill(1), CS); // a data cluster at the old end
    await device.write(new Uint8Array(512).fill(2), 4 * GiB); // L1[2]'s new table right after it
    await assert.rejects(device.read(new Uint8Array(512), 2 * GiB), refused, 'the entry still names no table of its own');
    await assert.rejects(device.write(new Uint8Array(512).fill(9), 2 * GiB), refused);
    const other = new Uint8Array(512);
    await device.read(other, 4 * GiB);
    assert.deepEqual(other, new Uint8Array(512).fill(2), 'guest data at 4 GiB is untouched');
  } finally {
    await device.close();
  }
});
