// Requests and close(), requests and failures: what a server turns into something any client
// can trigger. An acknowledged write survives close; a request settles only after all of its
// I/O has settled; close refuses newcomers with its own error.
import test from 'node:test';
import assert from 'node:assert/strict';
import { QedError } from '../../../src/base/errors.js';
import type { BlockFile } from '../../../src/io/block-file.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';
import { storeWith } from '../../support/fault-file.js';
import { readBack } from '../../support/read-back.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function filled(length: number, value: number): Uint8Array {
  return new Uint8Array(length).fill(value);
}

test('an allocating write racing close() is on disk after reopen, and both resolve', async () => {
  const store = new MemoryStore();
  await createImage('a.qed', { store, size: 16 * MiB, clusterSize: 64 * KiB });
  for (let round = 0; round < 8; round++) {
    const device = await openDevice('a.qed', { store, idleFlushMs: 60_000 });
    const offset = round * 2 * MiB;
    const write = device.write(filled(64 * KiB, round + 1), offset);
    const close = device.close();
    await write;
    await close;
    assert.deepEqual(await readBack(store, 'a.qed', offset, 64 * KiB), filled(64 * KiB, round + 1), `round ${round}`);
  }
});

test('many writes racing close() all survive reopen', async () => {
  const store = new MemoryStore();
  await createImage('a.qed', { store, size: 64 * MiB, clusterSize: 4 * KiB, tableSize: 1 });
  const device = await openDevice('a.qed', { store, idleFlushMs: 60_000, cacheBytes: 16 * KiB });
  const writes = Array.from({ length: 64 }, (_, i) => device.write(filled(4 * KiB, i + 1), i * MiB + 512));
  const close = device.close();
  await Promise.all(writes);
  await close;
  for (let i = 0; i < 64; i++) {
    assert.deepEqual(await readBack(store, 'a.qed', i * MiB + 512, 4 * KiB), filled(4 * KiB, i + 1), `write ${i}`);
  }
});

test('a request issued after close() began is refused with SHUTDOWN, and one after it ended with CLOSED', async () => {
  const store = new MemoryStore();
  await createImage('a.qed', { store, size: 4 * MiB });
  const device = await openDevice('a.qed', { store });
  const inFlight = device.write(filled(4 * KiB, 1), 0);
  const close = device.close();
  await assert.rejects(device.read(new Uint8Array(512), 0), (err: unknown) => err instanceof QedError && err.code === 'SHUTDOWN');
  await inFlight;
  await close;
  await assert.rejects(device.read(new Uint8Array(512), 0), (err: unknown) => err instanceof QedError && err.code === 'CLOSED');
});

/** A file whose writes and reads at chosen host offsets fail at once or take a while; counts what is still in flight. */
class SplitFate implements BlockFile {
  pending = 0;
  failAt = new Set<number>();
  slowAt = new Set<number>();
  constructor(private readonly inner: BlockFile) {}
  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }
  private async fate(offset: number): Promise<void> {
    if (this.failAt.has(offset)) throw new QedError('IO', `injected failure at ${offset}`, { path: this.path, errno: 'EIO' });
    if (this.slowAt.has(offset)) await new Promise((r) => setTimeout(r, 50));
  }
  async read(buf: Uint8Array, offset: number): Promise<number> {
    this.pending++;
    try { await this.fate(offset); return await this.inner.read(buf, offset); } finally { this.pending--; }
  }
  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.pending++;
    try { await this.fate(offset); await this.inner.write(buf, offset); } finally { this.pending--; }
  }
  flush(): Promise<void> { return this.inner.flush(); }
  size(): Promise<number> { return this.inner.size(); }
  truncate(size: number): Promise<void> { return this.inner.truncate(size); }
  close(): Promise<void> { return this.inner.close(); }
}

/** Two guest clusters whose data lie in reverse host order, so one request over both is two extents. */
async function imageWithTwoDataClusters(): Promise<{ store: MemoryStore; hosts: number[] }> {
  const store = new MemoryStore();
  await createImage('a.qed', { store, size: 4 * MiB, clusterSize: 64 * KiB });
  const device = await openDevice('a.qed', { store });
  await device.write(filled(64 * KiB, 2), 64 * KiB);
  await device.write(filled(64 * KiB, 1), 0);
  const extents = await device.layerStatus(0, 128 * KiB);
  await device.close();
  assert.equal(extents.length, 2, 'the two clusters are not host-contiguous');
  return { store, hosts: extents.map((e) => (e as { hostOffset: number }).hostOffset) };
}

test('a write that fails in one extent rejects only after its other extents have landed', async () => {
  const { store, hosts } = await imageWithTwoDataClusters();
  const file = new SplitFate(await store.open('a.qed', 'read-write'));
  const device = await openDevice('a.qed', { store: storeWith(store, 'a.qed', file) });
  file.slowAt.add(hosts[0]!);
  file.failAt.add(hosts[1]!);
  await assert.rejects(device.write(filled(128 * KiB, 9), 0));
  assert.equal(file.pending, 0, 'no write of the failed request is still in flight');
  await device.close().catch(() => undefined);
});

test('a read that fails in one extent rejects only after its other reads have finished', async () => {
  const { store, hosts } = await imageWithTwoDataClusters();
  const file = new SplitFate(await store.open('a.qed', 'read-only'));
  const device = await openDevice('a.qed', { store: storeWith(store, 'a.qed', file), readOnly: true });
  file.slowAt.add(hosts[0]!);
  file.failAt.add(hosts[1]!);
  await assert.rejects(device.read(new Uint8Array(128 * KiB), 0));
  assert.equal(file.pending, 0, 'no read of the failed request is still filling the buffer');
  await device.close();
});
