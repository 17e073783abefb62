// An L1 entry whose L2 table starts inside the file but runs past its end must never become
// usable: once allocating writes fill that range with guest data, the "table" would be guest
// bytes read as L2 entries, and guest offsets would map onto other clusters of the image
// (issue 15). QEMU 7.2 has this hole; the engine refuses such an entry for the life of the image.
import test from 'node:test';
import assert from 'node:assert/strict';
import { QedError } from '../../../src/base/errors.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';

const KiB = 1024;
const GiB = 1024 * 1024 * KiB;
const CS = 64 * KiB;

test('an L1 entry whose table straddles the end of the file stays refused after writes fill that space', async () => {
  const store = new MemoryStore();
  await createImage('evil.qed', { store, size: 4 * GiB, clusterSize: CS, tableSize: 4 });
  const setup = await openDevice('evil.qed', { store });
  await setup.write(new Uint8Array(CS).fill(0x11), 0); // guest cluster 0: the secret
  const secretHost = ((await setup.layerStatus(0, CS))[0] as { hostOffset: number }).hostOffset;
  // Guest cluster 1, the file's last cluster: guest bytes shaped as L2 entries naming the secret.
  const forged = new Uint8Array(CS);
  const view = new DataView(forged.buffer);
  for (let i = 0; i < CS / 8; i++) view.setBigUint64(i * 8, BigInt(secretHost), true);
  await setup.write(forged, CS);
  await setup.close();
  const file = store.files.get('evil.qed')!;
  const end = file.sizeSync;
  // L1 entry 1 (guest 2 GiB onwards) names a 4-cluster table at the last cluster: 3 clusters past the end.
  const l1Entry = new Uint8Array(8);
  new DataView(l1Entry.buffer).setBigUint64(0, BigInt(end - CS), true);
  file.writeSync(l1Entry, CS + 8);

  const device = await openDevice('evil.qed', { store });
  await device.write(new Uint8Array(4 * CS).fill(0x22), 8 * CS); // allocations now cover the straddled range
  const leak = new Uint8Array(CS);
  await assert.rejects(device.read(leak, 2 * GiB), (err: unknown) => err instanceof QedError && err.code === 'FORMAT',
    'guest bytes must never be read as an L2 table');
  await assert.rejects(device.write(new Uint8Array(CS), 2 * GiB), (err: unknown) => err instanceof QedError && err.code === 'FORMAT');
  const check = new Uint8Array(CS);
  await device.read(check, 0);
  assert.ok(check.every((b) => b === 0x11), 'the secret cluster is untouched');
  await device.close();
});
