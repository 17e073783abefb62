// The portable core has no default FileStore: an operation without one fails with a clear
// usage error instead of reaching for node:fs; one installed store serves every operation.
import test from 'node:test';
import assert from 'node:assert/strict';
import { QedError } from '../../../src/base/errors.js';
import { setDefaultFileStore } from '../../../src/io/default-store.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';

test('without an installed store, opening by path asks for one; with one, every operation uses it', async () => {
  await assert.rejects(openDevice('disk.qed'), (err: unknown) => err instanceof QedError && err.code === 'USAGE' && /no file store/.test(err.message));
  const store = new MemoryStore();
  setDefaultFileStore(store);
  try {
    await createImage('disk.qed', { size: 1024 * 1024 });
    assert.ok(store.files.has('disk.qed'));
    const device = await openDevice('disk.qed');
    await device.write(new Uint8Array(512).fill(1), 0);
    await device.close();
  } finally {
    setDefaultFileStore(null);
  }
});
