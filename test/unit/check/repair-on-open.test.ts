// The repair a read-write open of a dirty image runs (repairOnOpen, src/ops/open.ts): it fixes
// corruptions and cuts leaks off the end of the file, needs no new space (a full disk still
// opens, as with QEMU), bounds the copies it makes for clusters referenced more than once
// (issue 15), and leaves leaks inside the file to `qed check -r`.
import test from 'node:test';
import assert from 'node:assert/strict';
import { wrapIoError } from '../../../src/base/errors.js';
import type { BlockFile } from '../../../src/io/block-file.js';
import { MemoryStore, type MemoryFile } from '../../../src/io/memory-file.js';
import { readHeader } from '../../../src/engine/open.js';
import { checkImage } from '../../../src/check/check.js';
import { OPEN_REPAIR_MAX_COPIES, openDevice } from '../../../src/ops/open.js';
import { F_NEED_CHECK, ImageBuilder } from '../../support/image-builder.js';
import { storeWith } from '../../support/fault-file.js';

const KiB = 1024;
const CS = 4 * KiB;
const PATH = 'dirty.qed';

/** A disk with no free space left: the file may change in place or shrink, never grow. */
class FullDiskFile implements BlockFile {
  refused = 0;
  constructor(private readonly inner: BlockFile) {}
  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }
  read(buf: Uint8Array, offset: number): Promise<number> { return this.inner.read(buf, offset); }
  async write(buf: Uint8Array, offset: number): Promise<void> {
    if (offset + buf.length > await this.inner.size()) throw this.noSpace('write', offset);
    return this.inner.write(buf, offset);
  }
  async truncate(size: number): Promise<void> {
    if (size > await this.inner.size()) throw this.noSpace('truncate', size);
    return this.inner.truncate(size);
  }
  flush(): Promise<void> { return this.inner.flush(); }
  size(): Promise<number> { return this.inner.size(); }
  close(): Promise<void> { return this.inner.close(); }
  private noSpace(op: string, offset: number): Error {
    this.refused++;
    return wrapIoError(op, this.path, offset, Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }));
  }
}

/** A cluster whose bytes are all `fill`. */
const filled = (fill: number): Uint8Array => new Uint8Array(CS).fill(fill);

/** Open `file` read-write (the repair runs), read guest clusters 0..count-1, close. */
async function openAndRead(file: MemoryFile, count: number, fullDisk = false): Promise<{ clusters: Uint8Array[]; refused: number }> {
  const store = new MemoryStore();
  store.add(PATH, file);
  const disk = fullDisk ? new FullDiskFile(file.view(false)) : null;
  const device = await openDevice(PATH, { store: disk ? storeWith(store, PATH, disk) : store });
  const clusters: Uint8Array[] = [];
  try {
    for (let g = 0; g < count; g++) {
      const bytes = new Uint8Array(CS);
      await device.read(bytes, g * CS);
      clusters.push(bytes);
    }
  } finally {
    await device.close();
  }
  return { clusters, refused: disk?.refused ?? 0 };
}

async function checkOf(file: MemoryFile) {
  const view = file.view(true);
  const { header } = await readHeader(view);
  return { header, result: await checkImage(view, header) };
}

test('a dirty image with a leak under its only L2 table opens read-write on a full disk: the repair moves nothing and leaves the leak to qed check -r', async () => {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, imageSize: 1024 * KiB });
  const data = b.appendData(filled(0x5a));
  b.append(1); // leaked, under the table: reclaiming it means moving the table
  const table = b.appendTable();
  b.setL1(0, table).setL2(table, 0, data);
  b.header.features |= F_NEED_CHECK;
  const file = b.toFile(PATH);
  const sizeBefore = file.sizeSync;

  const opened = await openAndRead(file, 1, true);
  assert.deepEqual(opened.clusters[0], filled(0x5a));
  const { header, result } = await checkOf(file);
  assert.equal(header.features & F_NEED_CHECK, 0n, 'NEED_CHECK cleared');
  assert.deepEqual({ corruptions: result.corruptions, leaks: result.leaks }, { corruptions: 0, leaks: 1 });
  assert.equal(file.sizeSync, sizeBefore);
});

test('the repair on open cuts leaked clusters off the end of the file, on a full disk too', async () => {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, imageSize: 1024 * KiB });
  b.mapData(0, filled(0x11));
  const end = b.end;
  b.append(3);
  b.header.features |= F_NEED_CHECK;
  const file = b.toFile(PATH);
  await openAndRead(file, 1, true);
  assert.equal(file.sizeSync, end);
  assert.equal((await checkOf(file)).result.leaks, 0);
});

test('on a full disk, a cluster referenced twice loses its second reference (cleared, reads zeros) instead of a copy, and the image opens', async () => {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, imageSize: 1024 * KiB });
  const shared = b.mapData(0, filled(0x22));
  b.setL2(b.tableOf(0), 1, shared);
  b.header.features |= F_NEED_CHECK;
  const file = b.toFile(PATH);
  const sizeBefore = file.sizeSync;

  const opened = await openAndRead(file, 2, true);
  assert.ok(opened.refused > 0, 'the repair did try to copy');
  assert.deepEqual(opened.clusters, [filled(0x22), filled(0)]);
  assert.equal(file.sizeSync, sizeBefore);
  const { result } = await checkOf(file);
  assert.deepEqual({ corruptions: result.corruptions, leaks: result.leaks }, { corruptions: 0, leaks: 0 });
});

test(`an L2 table whose 1000 entries all name one cluster: the repair on open copies it ${OPEN_REPAIR_MAX_COPIES} times at most and clears the other references (issue 15)`, async () => {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, imageSize: 8 * 1024 * KiB });
  const shared = b.mapData(0, filled(0x33));
  for (let i = 1; i < 1000; i++) b.setL2(b.tableOf(0), i, shared);
  b.header.features |= F_NEED_CHECK;
  const file = b.toFile(PATH);
  const sizeBefore = file.sizeSync;

  const opened = await openAndRead(file, 1000);
  assert.equal(file.sizeSync, sizeBefore + OPEN_REPAIR_MAX_COPIES * CS, 'one new cluster per copy, no more');
  const copies = opened.clusters.filter((c) => c[0] === 0x33).length;
  assert.equal(copies, 1 + OPEN_REPAIR_MAX_COPIES, 'the first reference and the copies read the data');
  assert.equal(opened.clusters.filter((c) => c.every((byte) => byte === 0)).length, 1000 - copies, 'the rest read zeros');
  const { result } = await checkOf(file);
  assert.deepEqual({ corruptions: result.corruptions, leaks: result.leaks }, { corruptions: 0, leaks: 0 });
});
