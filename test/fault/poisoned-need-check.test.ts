// Probe: after a failed flush poisons the image, an idle writeback that was already running
// must not go on to clear NEED_CHECK (the failed flush may have dropped table writes).
import test from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../../src/io/memory-file.js';
import { QedImage } from '../../src/engine/qed-image.js';
import { readHeader } from '../../src/engine/open.js';
import { openDevice } from '../../src/ops/open.js';
import { createImage } from '../../src/ops/create.js';
import { storeWith } from '../support/fault-file.js';
import type { BlockFile } from '../../src/io/block-file.js';
import { IoError } from '../../src/base/errors.js';

test('a flush that fails while the idle writeback runs leaves NEED_CHECK set (engine bug: the idle writeback clears it on a poisoned image)', async () => {
  const store = new MemoryStore();
  await createImage('/p.qed', { store, size: 1024 * 1024, clusterSize: 4096, tableSize: 2 });
  const memory = store.files.get('/p.qed')!.view(false);
  let flushes = 0;
  // The third flush fails with EIO (see below for whose it is).
  const file: BlockFile = {
    path: memory.path, readOnly: false,
    read: (b, o) => memory.read(b, o), write: (b, o) => memory.write(b, o),
    flush: async () => { if (++flushes === 3) throw new IoError('injected EIO', { path: memory.path, errno: 'EIO' }); await memory.flush(); },
    size: () => memory.size(), truncate: (n) => memory.truncate(n), close: () => memory.close(),
  };
  const device = await openDevice('/p.qed', { store: storeWith(store, '/p.qed', file), idleFlushMs: 1e9 }) as QedImage;
  await device.write(new Uint8Array(4096).fill(7), 0);
  // Idle writeback: NEED_CHECK set and flushed (flush 1), tables written and flushed (flush 2), then a
  // second section clears NEED_CHECK. A guest flush() queued behind the first section gets flush 3, which fails.
  const idle = device.quiesce();
  const [guestFlush] = await Promise.allSettled([device.flush()]);
  await idle.catch(() => undefined);
  assert.equal(guestFlush!.status, 'rejected', 'the guest flush failed');
  await assert.rejects(device.read(new Uint8Array(512), 0), /must be reopened/, 'the image is poisoned');
  const { header } = await readHeader(store.files.get('/p.qed')!.view(true));
  assert.notEqual(header.features & 2n, 0n, `NEED_CHECK was cleared on disk after a failed flush poisoned the image (${flushes} flushes)`);
  await device.close().catch(() => undefined);
});
