// Resize: QED grows within its L1 capacity and never shrinks (QEMU's rule). Growing must not
// bring backing-file data into the guest's view: QEMU refuses to grow a QED image whose
// backing file reaches past the old end (measured on 7.2: "Block driver does not support
// requested flags"), because the new area would show data the guest never saw. Either
// zeros or that refusal is acceptable; backing bytes are not.
import test from 'node:test';
import assert from 'node:assert/strict';
import { QedError } from '../../../src/base/errors.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';
import { readBack } from '../../support/read-back.js';

const MiB = 2 ** 20;

async function overlayOver(rawLength: number, size: number): Promise<MemoryStore> {
  const store = new MemoryStore();
  store.add('base.raw').writeSync(new Uint8Array(rawLength).fill(0xaa), 0);
  await createImage('ov.qed', { store, size, backingFile: 'base.raw', backingFormat: 'raw' });
  return store;
}

function readAt(store: MemoryStore, offset: number, length: number): Promise<Uint8Array> {
  return readBack(store, 'ov.qed', offset, length);
}

test('growing over a longer backing file shows zeros in the new area, or is refused', async () => {
  const store = await overlayOver(2 * MiB, MiB);
  const device = await openDevice('ov.qed', { store });
  let grown = true;
  try {
    await device.resize(1.5 * MiB);
  } catch (err) {
    assert.ok(err instanceof QedError, String(err));
    grown = false;
  } finally {
    await device.close();
  }
  if (grown) assert.deepEqual(await readAt(store, MiB, MiB / 2), new Uint8Array(MiB / 2), 'the grown area reads zeros');
  else {
    const reopened = await openDevice('ov.qed', { store, readOnly: true });
    assert.equal(reopened.size, MiB, 'a refused resize changes nothing');
    await reopened.close();
  }
});

test('growing after a write into the partial last cluster over a longer backing file still shows zeros past the old end', async () => {
  // The copy-on-write of the last cluster fills it from the backing file, past the old end too.
  const store = await overlayOver(2 * MiB, MiB - 1024);
  const device = await openDevice('ov.qed', { store });
  let grown = true;
  try {
    await device.write(new Uint8Array(512).fill(1), MiB - 2048);
    await device.resize(MiB);
  } catch (err) {
    assert.ok(err instanceof QedError, String(err));
    grown = false;
  } finally {
    await device.close();
  }
  if (grown) assert.deepEqual(await readAt(store, MiB - 1024, 1024), new Uint8Array(1024));
});

test('growing over a backing file that ends before the old size reads zeros in the new area', async () => {
  const store = await overlayOver(MiB / 2, MiB);
  const device = await openDevice('ov.qed', { store });
  await device.resize(2 * MiB);
  await device.close();
  assert.deepEqual(await readAt(store, MiB, MiB), new Uint8Array(MiB));
  assert.deepEqual(await readAt(store, 0, 16), new Uint8Array(16).fill(0xaa), 'the old area still shows the backing file');
});

test('growing without a backing file: the new size persists and the new area reads zeros after data near the old end', async () => {
  const store = new MemoryStore();
  await createImage('ov.qed', { store, size: MiB - 512 });
  const device = await openDevice('ov.qed', { store });
  await device.write(new Uint8Array(512).fill(9), MiB - 1024);
  await device.resize(3 * MiB);
  assert.equal(device.size, 3 * MiB);
  await device.close();
  const after = await readAt(store, MiB - 1024, 2048);
  assert.deepEqual(after.subarray(0, 512), new Uint8Array(512).fill(9));
  assert.deepEqual(after.subarray(512), new Uint8Array(1536));
});

test('resize refuses shrinking, sizes that are not sector multiples, and sizes beyond the L1 capacity', async () => {
  const store = new MemoryStore();
  await createImage('ov.qed', { store, size: MiB, clusterSize: 4096, tableSize: 1 });
  const device = await openDevice('ov.qed', { store });
  try {
    await assert.rejects(device.resize(MiB / 2), (err: unknown) => err instanceof QedError && err.code === 'UNSUPPORTED');
    await assert.rejects(device.resize(MiB + 100), (err: unknown) => err instanceof QedError && err.code === 'USAGE');
    await assert.rejects(device.resize(2 ** 30 + 512), (err: unknown) => err instanceof QedError && err.code === 'USAGE' && /capacity/.test(err.message));
    await device.resize(2 ** 30); // exactly the capacity of 4 KiB clusters and 1-cluster tables
    assert.equal(device.size, 2 ** 30);
  } finally {
    await device.close();
  }
});
