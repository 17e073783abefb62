// NodeFile reads small requests from the page cache without waiting (preadv2 RWF_NOWAIT)
// where the file system allows it, and the usual way elsewhere (tmpfs says it cannot). Either
// way the bytes are the file's, and past its end they read as zeros.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeFile } from '../../../src/io/node-file.js';

const KiB = 1024;

for (const [where, root] of [['a disk file system (tmpdir)', tmpdir()], ['tmpfs', '/dev/shm']] as const) {
  test(`reads return the file's bytes and zeros past its end on ${where}`, async (t) => {
    const dir = await mkdtemp(join(root, 'qed-read-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const content = new Uint8Array(1024 * KiB + 100);
    for (let i = 0; i < content.length; i++) content[i] = (i * 7 + (i >> 12)) & 0xff;
    const path = join(dir, 'f.bin');
    await writeFile(path, content);
    const file = await NodeFile.open(path, 'read-only');
    try {
      for (const [offset, length] of [[0, 512], [4096, 4 * KiB], [12345, 64 * KiB], [100, 200 * KiB], [content.length - 1000, 4 * KiB], [content.length + 10, 512]]) {
        const buf = new Uint8Array(length).fill(0xee);
        const got = await file.read(buf, offset);
        const expected = new Uint8Array(length);
        expected.set(content.subarray(offset, offset + length));
        assert.equal(got, Math.max(0, Math.min(length, content.length - offset)), `bytes at ${offset}+${length}`);
        assert.deepEqual(buf, expected, `content at ${offset}+${length}`);
      }
    } finally {
      await file.close();
    }
  });
}
