// A program that ends without closing a writable image keeps its writes (the Node entry
// closes such images when the event loop runs dry) and is told it forgot.
import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFile } from 'node:fs/promises';
import { qemuIo, run, scratchDir, succeed, qemuImg } from '../support/qemu.js';

const ENTRY = fileURLToPath(new URL('../../src/index.js', import.meta.url));

test('allocating writes of an image never closed are still there after the process ends, with a warning', async (t) => {
  const dir = await scratchDir(t);
  const image = join(dir, 'forgot.qed');
  const script = join(dir, 'forgot.mjs');
  await writeFile(script, `
    import { createImage, openImage } from ${JSON.stringify(ENTRY)};
    await createImage(${JSON.stringify(image)}, { size: 64 * 1024 * 1024 });
    const disk = await openImage(${JSON.stringify(image)});
    for (let i = 0; i < 16; i++) await disk.write(Buffer.alloc(65536, 0x42), i * 1024 * 1024);
    // no close()
  `);
  const result = await run(process.execPath, [script]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /QED_IMAGE_NOT_CLOSED.*forgot\.qed' was not closed/);
  await succeed('qemu-img check', qemuImg(['check', image]));
  await succeed('qemu-io read', qemuIo(['-c', 'read -P 0x42 15M 64k', '-c', 'read -P 0 16M 64k', image]));
});
