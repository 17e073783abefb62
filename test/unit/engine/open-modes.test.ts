// Opens that would silently lose data are refused; a raw image poisons itself after a failed
// flush, because a later fdatasync may report success for data the page cache dropped.
import test from 'node:test';
import assert from 'node:assert/strict';
import { QedError } from '../../../src/base/errors.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';
import { FaultFile, storeWith } from '../../support/fault-file.js';

const MiB = 2 ** 20;

test('a read-write open without the backing file is refused; read-only is allowed', async () => {
  const store = new MemoryStore();
  store.add('base.raw').writeSync(new Uint8Array(MiB).fill(0xaa), 0);
  await createImage('ov.qed', { store, size: MiB, backingFile: 'base.raw', backingFormat: 'raw' });
  await assert.rejects(openDevice('ov.qed', { store, noBacking: true }), (err: unknown) => err instanceof QedError && err.code === 'USAGE');
  const device = await openDevice('ov.qed', { store, noBacking: true, readOnly: true });
  const buf = new Uint8Array(512);
  await device.read(buf, 0);
  assert.deepEqual(buf, new Uint8Array(512));
  await device.close();
});

test('a raw image whose flush failed fails every later request until reopened', async () => {
  const store = new MemoryStore();
  store.add('disk.raw').writeSync(new Uint8Array(MiB), 0);
  const file = new FaultFile(await store.open('disk.raw', 'read-write'), { at: 1, code: 'EIO', persistent: false }, 'EIO');
  // Only flushes count: writes go to a file without faults underneath.
  const flushOnly = Object.assign(Object.create(file), {
    write: (b: Uint8Array, o: number) => file.inner.write(b, o),
    read: (b: Uint8Array, o: number) => file.inner.read(b, o),
  });
  const device = await openDevice('disk.raw', { store: storeWith(store, 'disk.raw', flushOnly), format: 'raw' });
  await device.write(new Uint8Array(512).fill(1), 0);
  await assert.rejects(device.flush(), (err: unknown) => err instanceof QedError && err.code === 'IO');
  await assert.rejects(device.flush(), (err: unknown) => err instanceof QedError && err.code === 'POISONED');
  await assert.rejects(device.write(new Uint8Array(512), 0), (err: unknown) => err instanceof QedError && err.code === 'POISONED');
  await device.close().catch(() => undefined);
});

test('closing a raw image makes its writes durable, and reports a failed flush instead of losing it', async () => {
  const store = new MemoryStore();
  store.add('disk.raw').writeSync(new Uint8Array(MiB), 0);
  let flushes = 0;
  let failNext = false;
  const inner = await store.open('disk.raw', 'read-write');
  const counted = Object.assign(Object.create(inner), {
    read: (b: Uint8Array, o: number) => inner.read(b, o),
    write: (b: Uint8Array, o: number) => inner.write(b, o),
    flush: async () => { flushes++; if (failNext) throw new QedError('IO', 'injected flush failure', { errno: 'EIO' }); },
    close: () => inner.close(),
  });
  const device = await openDevice('disk.raw', { store: storeWith(store, 'disk.raw', counted), format: 'raw' });
  await device.write(new Uint8Array(512).fill(1), 0);
  await device.close();
  assert.equal(flushes, 1, 'close flushed once');
  const again = await openDevice('disk.raw', { store: storeWith(store, 'disk.raw', counted), format: 'raw' });
  await again.write(new Uint8Array(512).fill(2), 0);
  failNext = true;
  await assert.rejects(again.close(), (err: unknown) => err instanceof QedError && err.code === 'IO');
});

test('a failed open releases the backing file it had opened (its lock too)', async () => {
  const store = new MemoryStore({ locking: true });
  store.add('base.raw').writeSync(new Uint8Array(MiB), 0);
  await createImage('top.qed', { store, size: MiB, backingFile: 'base.raw', backingFormat: 'raw' });
  await assert.rejects(openDevice('top.qed', { store, cacheBytes: -1 }), (err: unknown) => err instanceof QedError && err.code === 'USAGE');
  const base = await openDevice('base.raw', { store, format: 'raw' }); // a writer: refused if the backing were still held
  await base.close();
});
