// NodeFile reads small requests from the page cache without waiting (preadv2 RWF_NOWAIT)
// where the file system allows it, and the usual way elsewhere (tmpfs says it cannot). Either
// way the bytes are the file's, and past its end they read as zeros.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire, syncBuiltinESMExports } from 'node:module';
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

// On tmpfs (memory-backed, and this machine has no swap) small requests are copied on the
// main thread: the bytes are there as soon as the call returns, before any await. Elsewhere
// they go through the thread pool, and the same calls must give the same bytes.
test('on tmpfs small reads and writes complete before the call returns; large ones and other file systems still work', async (t) => {
  const swap = (await import('node:fs')).readFileSync('/proc/swaps', 'utf8').trim().split('\n').length > 1;
  for (const [root, inline] of [['/dev/shm', !swap], [tmpdir(), false]] as const) {
    const dir = await mkdtemp(join(root, 'qed-inline-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'f.bin');
    await writeFile(path, new Uint8Array(512 * KiB).fill(0x11));
    const file = await NodeFile.open(path, 'read-write');
    try {
      const small = new Uint8Array(4 * KiB).fill(0x22);
      const writing = file.write(small, 8 * KiB);
      if (inline) assert.equal((await import('node:fs')).readFileSync(path)[8 * KiB], 0x22, `${root}: written before the call returned`);
      await writing;
      const buf = new Uint8Array(4 * KiB);
      const reading = file.read(buf, 8 * KiB);
      if (inline) assert.equal(buf[0], 0x22, `${root}: read before the call returned`);
      assert.equal(await reading, 4 * KiB);
      assert.ok(buf.every((b) => b === 0x22));
      const large = new Uint8Array(256 * KiB).fill(0x33); // over the inline bound: the thread pool
      await file.write(large, 128 * KiB);
      const back = new Uint8Array(256 * KiB);
      assert.equal(await file.read(back, 128 * KiB), 256 * KiB);
      assert.ok(back.every((b) => b === 0x33));
      const past = new Uint8Array(4 * KiB).fill(0xee); // across the end: the rest is zeros
      assert.equal(await file.read(past, 512 * KiB - 1024), 1024);
      assert.ok(past.subarray(0, 1024).every((b) => b === 0x11) && past.subarray(1024).every((b) => b === 0));
    } finally {
      await file.close();
    }
    const readOnly = await NodeFile.open(path, 'read-only');
    try {
      await assert.rejects(readOnly.write(new Uint8Array(512), 0), (err: unknown) => (err as { code?: string }).code === 'IO', `${root}: a failed write is an IoError`);
    } finally {
      await readOnly.close();
    }
  }
});

// Buffered writes to one file hold its inode lock: a small write copied on the main thread
// while a large one of the same file runs on the thread pool waits that copy out, blocking
// the event loop (80 µs a 4 KiB write in a convert). So it goes to the pool too.
test('on tmpfs a small write made while a large one is on the thread pool does not run on the main thread', async (t) => {
  const swap = (await import('node:fs')).readFileSync('/proc/swaps', 'utf8').trim().split('\n').length > 1;
  const fs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
  const original = fs.writeSync;
  let mainThreadWrites = 0;
  fs.writeSync = ((...args: Parameters<typeof original>) => { mainThreadWrites++; return original(...args); }) as typeof original;
  syncBuiltinESMExports();
  t.after(() => { fs.writeSync = original; syncBuiltinESMExports(); });
  const dir = await mkdtemp(join('/dev/shm', 'qed-pooled-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = await NodeFile.create(join(dir, 'f.bin'));
  try {
    const large = file.write(new Uint8Array(8 * 1024 * KiB).fill(0x44), 0);
    const small = file.write(new Uint8Array(4 * KiB).fill(0x55), 16 * 1024 * KiB);
    assert.equal(mainThreadWrites, 0, 'the small write waited for no lock on the main thread');
    await Promise.all([large, small]);
    await file.write(new Uint8Array(4 * KiB).fill(0x66), 20 * 1024 * KiB);
    // With nothing on the pool a small write is copied on the main thread again (where tmpfs
    // counts as memory: no swap), which also shows the count above could have moved.
    assert.equal(mainThreadWrites, swap ? 0 : 1);
    const back = new Uint8Array(4 * KiB);
    await file.read(back, 16 * 1024 * KiB);
    assert.ok(back.every((b) => b === 0x55));
  } finally {
    await file.close();
  }
});
