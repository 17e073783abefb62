// A dirty image (NEED_CHECK set, as a crash leaves it) opened read-only cannot be repaired,
// but must read exactly as it will after the repair a read-write open runs: entries the
// check would clear (past the end of the file, misaligned) read as unallocated, everything
// else as it is. A clean image with the same bad entry refuses the read instead.
import test from 'node:test';
import assert from 'node:assert/strict';
import { QedError } from '../../../src/base/errors.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { openDevice } from '../../../src/ops/open.js';
import { F_NEED_CHECK, ImageBuilder } from '../../support/image-builder.js';

const CS = 0x10000;

/** Guest clusters 0 and 1 hold data; L2[2] points past the end of the file; L2[3] is misaligned; L2[4] names the L1 table. */
function damaged(dirty: boolean): MemoryStore {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, imageSize: 16 * CS });
  b.mapData(0, 0x11);
  b.mapData(1, 0x22);
  const table = b.tableOf(0);
  b.setL2(table, 2, 0x400000);
  b.setL2(table, 3, 0x90000 + 0x200);
  b.setL2(table, 4, Number(b.header.l1TableOffset));
  if (dirty) b.header.features |= F_NEED_CHECK;
  const store = new MemoryStore();
  store.add('/d.qed', b.toFile('/d.qed'));
  return store;
}

async function readAll(store: MemoryStore, readOnly: boolean): Promise<Uint8Array> {
  const device = await openDevice('/d.qed', { store, readOnly });
  try {
    const buf = new Uint8Array(device.size);
    await device.read(buf, 0);
    return buf;
  } finally {
    await device.close();
  }
}

test('a dirty image read read-only shows what the repair will leave, and writes nothing', async () => {
  const store = damaged(true);
  const before = store.files.get('/d.qed')!.clone();
  const readOnly = await readAll(store, true);
  assert.equal(readOnly[0], 0x11);
  assert.equal(readOnly[CS], 0x22);
  assert.ok(readOnly.subarray(2 * CS, 5 * CS).every((b) => b === 0), 'entries the repair clears read as zeros (the L1 table is never guest data)');
  const after = store.files.get('/d.qed')!;
  assert.equal(after.sizeSync, before.sizeSync);
  const a = new Uint8Array(after.sizeSync); after.readSync(a, 0);
  const b = new Uint8Array(before.sizeSync); before.readSync(b, 0);
  assert.deepEqual(a, b, 'a read-only open changes no byte');

  const repaired = await readAll(store, false);
  assert.deepEqual(repaired, readOnly, 'the read-write open (with repair) reads the same bytes');
});

test('a clean image with the same bad entries refuses reads of them with a FORMAT error', async () => {
  const store = damaged(false);
  const device = await openDevice('/d.qed', { store, readOnly: true });
  try {
    const good = new Uint8Array(CS);
    await device.read(good, 0);
    assert.equal(good[0], 0x11);
    await assert.rejects(device.read(new Uint8Array(CS), 2 * CS), (err: unknown) => err instanceof QedError && err.code === 'FORMAT');
    await assert.rejects(device.read(new Uint8Array(CS), 3 * CS), (err: unknown) => err instanceof QedError && err.code === 'FORMAT');
    await assert.rejects(device.read(new Uint8Array(CS), 4 * CS), (err: unknown) => err instanceof QedError && err.code === 'FORMAT');
  } finally {
    await device.close();
  }
});
