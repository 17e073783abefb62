// Per-request options of the device contract: FUA makes one request durable, NO_HOLE leaves
// the range allocated, FAST_ZERO refuses before touching anything what it cannot do cheaply;
// capabilities say what a device does natively.
import test from 'node:test';
import assert from 'node:assert/strict';
import { QedError } from '../../../src/base/errors.js';
import type { BlockFile } from '../../../src/io/block-file.js';
import { MemoryFile, MemoryStore } from '../../../src/io/memory-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';
import { storeWith } from '../../support/fault-file.js';
import { readBack } from '../../support/read-back.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Keeps a copy of the file as it was at its last flush: what a power cut would leave. */
class DurableSnapshots implements BlockFile {
  durable: MemoryFile;
  constructor(private readonly inner: MemoryFile) { this.durable = inner.clone(); }
  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return false; }
  read(buf: Uint8Array, offset: number): Promise<number> { return this.inner.read(buf, offset); }
  write(buf: Uint8Array, offset: number): Promise<void> { return this.inner.write(buf, offset); }
  async flush(): Promise<void> { await this.inner.flush(); this.durable = this.inner.clone(); }
  size(): Promise<number> { return this.inner.size(); }
  truncate(size: number): Promise<void> { return this.inner.truncate(size); }
  close(): Promise<void> { return Promise.resolve(); }
}

function readFrom(file: MemoryFile, offset: number, length: number): Promise<Uint8Array> {
  const store = new MemoryStore();
  store.add('snap.qed', file.clone('snap.qed'));
  return readBack(store, 'snap.qed', offset, length);
}

async function fixture(): Promise<{ store: MemoryStore; snapshots: DurableSnapshots; open: () => ReturnType<typeof openDevice> }> {
  const store = new MemoryStore();
  await createImage('a.qed', { store, size: 8 * MiB, clusterSize: 64 * KiB });
  const snapshots = new DurableSnapshots(store.files.get('a.qed')!);
  return { store, snapshots, open: () => openDevice('a.qed', { store: storeWith(store, 'a.qed', snapshots), idleFlushMs: 60_000 }) };
}

test('a FUA write is durable when it resolves; a plain one need not be', async () => {
  const { snapshots, open } = await fixture();
  const device = await open();
  await device.write(new Uint8Array(4 * KiB).fill(1), 0);
  assert.deepEqual(await readFrom(snapshots.durable, 0, 4 * KiB), new Uint8Array(4 * KiB), 'not flushed yet');
  await device.write(new Uint8Array(4 * KiB).fill(2), MiB, { fua: true });
  assert.deepEqual(await readFrom(snapshots.durable, MiB, 4 * KiB), new Uint8Array(4 * KiB).fill(2));
  await device.close();
});

test('a FUA write-zeroes is durable when it resolves', async () => {
  const { snapshots, open } = await fixture();
  const device = await open();
  await device.write(new Uint8Array(128 * KiB).fill(3), 0);
  await device.flush();
  await device.writeZeroes(0, 128 * KiB, { fua: true });
  assert.deepEqual(await readFrom(snapshots.durable, 0, 128 * KiB), new Uint8Array(128 * KiB));
  await device.close();
});

test('NO_HOLE write-zeroes leaves the range allocated and reading zeros', async () => {
  const { open } = await fixture();
  const device = await open();
  await device.writeZeroes(100 * KiB, 300 * KiB, { noHole: true });
  const status = await device.layerStatus(64 * KiB, 384 * KiB);
  assert.ok(status.every((e) => e.kind === 'data'), JSON.stringify(status));
  const buf = new Uint8Array(300 * KiB).fill(9);
  await device.read(buf, 100 * KiB);
  assert.deepEqual(buf, new Uint8Array(300 * KiB));
  // Without NO_HOLE the same request makes zero clusters (no data written).
  await device.writeZeroes(2 * MiB, 256 * KiB);
  assert.ok((await device.layerStatus(2 * MiB, 256 * KiB)).every((e) => e.kind === 'zero'));
  await device.close();
});

test('FAST_ZERO succeeds where only metadata changes and refuses, changing nothing, where zeros must be written', async () => {
  const { open } = await fixture();
  const device = await open();
  await device.writeZeroes(0, 4 * MiB, { fastZero: true });
  assert.ok((await device.layerStatus(0, 4 * MiB)).every((e) => e.kind === 'zero'));
  await device.write(new Uint8Array(64 * KiB).fill(5), 6 * MiB);
  const before = await device.layerStatus(4 * MiB, 4 * MiB);
  for (const [offset, length, options] of [
    [4 * MiB, 4 * MiB, { fastZero: true }],
    [6 * MiB + 512, 1024, { fastZero: true }],
    [4 * MiB, 64 * KiB, { fastZero: true, noHole: true }],
  ] as const) {
    await assert.rejects(device.writeZeroes(offset, length, options), (err: unknown) => err instanceof QedError && err.code === 'FAST_ZERO');
  }
  assert.deepEqual(await device.layerStatus(4 * MiB, 4 * MiB), before, 'a refused fast zero changed nothing');
  const buf = new Uint8Array(64 * KiB);
  await device.read(buf, 6 * MiB);
  assert.deepEqual(buf, new Uint8Array(64 * KiB).fill(5));
  await device.close();
});

test('a raw image refuses FAST_ZERO and zeros without it', async () => {
  const store = new MemoryStore();
  store.add('d.raw').writeSync(new Uint8Array(MiB).fill(1), 0);
  const device = await openDevice('d.raw', { store, format: 'raw' });
  await assert.rejects(device.writeZeroes(0, 4 * KiB, { fastZero: true }), (err: unknown) => err instanceof QedError && err.code === 'FAST_ZERO');
  await device.writeZeroes(0, 4 * KiB);
  const buf = new Uint8Array(8 * KiB);
  await device.read(buf, 0);
  assert.deepEqual(buf.subarray(0, 4 * KiB), new Uint8Array(4 * KiB));
  assert.equal(buf[4 * KiB], 1);
  assert.equal(device.capabilities.fastZero, false);
  await device.close();
});

test('capabilities: writability follows the open mode; block sizes are sane for an NBD client', async () => {
  const { store } = await fixture();
  const rw = await openDevice('a.qed', { store });
  assert.equal(rw.capabilities.writable, true);
  assert.deepEqual(rw.capabilities.blockSizes, { minimum: 1, preferred: 64 * KiB, maximum: 32 * MiB });
  await rw.close();
  const ro = await openDevice('a.qed', { store, readOnly: true });
  assert.equal(ro.capabilities.writable, false);
  await assert.rejects(ro.write(new Uint8Array(512), 0), (err: unknown) => err instanceof QedError && err.code === 'READ_ONLY');
  await ro.close();
});
