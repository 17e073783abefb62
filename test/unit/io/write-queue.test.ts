// Opened for bulk writes, a file's large writes run on the thread pool one at a time, in the
// order they were issued, and those that continue one another go as one vectored write; small
// ones, and every write of a file not opened so, still go side by side. Each request learns of its own failure, and closing the file waits for the large
// writes it accepted.
import test from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { WriteQueue } from '../../../src/io/write-queue.js';
import { NodeFile } from '../../../src/io/node-file.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** tmpfs and ramfs (statfs f_type), where NodeFile copies small writes on the main thread when there is no swap. */
const MEMORY_FILE_SYSTEMS = new Set([0x01021994, 0x858458f6]);

/** Counts fs.write and fs.writev calls, and the most of them under way at once, until the test ends. */
function watchPooledWrites(t: test.TestContext): { calls: () => number; vectored: () => number; mostAtOnce: () => number } {
  const fs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
  const { write, writev } = fs;
  let calls = 0;
  let vectored = 0;
  let now = 0;
  let most = 0;
  const track = <F extends (...args: never[]) => void>(original: F, isVectored: boolean): F => ((...args: unknown[]) => {
    calls++;
    if (isVectored) vectored++;
    now++;
    most = Math.max(most, now);
    const callback = args[args.length - 1] as (...results: unknown[]) => void;
    args[args.length - 1] = (...results: unknown[]) => { now--; callback(...results); };
    (original as unknown as (...a: unknown[]) => void)(...args);
  }) as unknown as F;
  fs.write = track(write, false);
  fs.writev = track(writev, true);
  syncBuiltinESMExports();
  t.after(() => { fs.write = write; fs.writev = writev; syncBuiltinESMExports(); });
  return { calls: () => calls, vectored: () => vectored, mostAtOnce: () => most };
}

for (const [where, root] of [['a disk file system (tmpdir)', tmpdir()], ['tmpfs', '/dev/shm']] as const) {
  test(`opened for bulk writes, large writes issued together on ${where} go one at a time, back-to-back ones merged, each with its own bytes`, async (t) => {
    const dir = await mkdtemp(join(root, 'qed-wq-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const watch = watchPooledWrites(t);
    const file = await NodeFile.create(join(dir, 'f.bin'), { bulkWrites: true });
    const pieces = Array.from({ length: 8 }, (_, i) => new Uint8Array(MiB).fill(0x10 + i));
    try {
      // Eight back to back, then one apart from them.
      const writes = pieces.map((piece, i) => file.write(piece, i * MiB));
      writes.push(file.write(new Uint8Array(256 * KiB).fill(0x77), 10 * MiB));
      await Promise.all(writes);
    } finally {
      await file.close();
    }
    assert.equal(watch.mostAtOnce(), 1, 'never two of one file\'s writes on the pool at once');
    // The first goes at once; the seven queued behind it go together; the one apart alone.
    assert.equal(watch.calls(), 3, `${watch.calls()} calls`);
    assert.equal(watch.vectored(), 1);
    const back = readFileSync(join(dir, 'f.bin'));
    assert.equal(back.length, 10 * MiB + 256 * KiB);
    for (let i = 0; i < 8; i++) assert.ok(back.subarray(i * MiB, (i + 1) * MiB).every((b) => b === 0x10 + i), `piece ${i}`);
    assert.ok(back.subarray(8 * MiB, 10 * MiB).every((b) => b === 0));
    assert.ok(back.subarray(10 * MiB).every((b) => b === 0x77));
  });
}

test('small writes issued together on a disk file go to the thread pool side by side, not one at a time, even opened for bulk writes', async (t) => {
  // One at a time, 4 KiB overwrites at depth 32 ran five times slower: each waited a pool round trip.
  const dir = await mkdtemp(join(tmpdir(), 'qed-wq-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const watch = watchPooledWrites(t);
  const file = await NodeFile.create(join(dir, 'f.bin'), { bulkWrites: true });
  try {
    await Promise.all(Array.from({ length: 32 }, (_, i) => file.write(new Uint8Array(4 * KiB).fill(i + 1), i * 64 * KiB)));
  } finally {
    await file.close();
  }
  const swap = readFileSync('/proc/swaps', 'utf8').trim().split('\n').length > 1;
  if (MEMORY_FILE_SYSTEMS.has((await statfs(dir)).type) && !swap) {
    assert.equal(watch.calls(), 0, 'TMPDIR is in memory here: every small write was copied on the main thread');
  } else {
    assert.equal(watch.calls(), 32);
    assert.equal(watch.mostAtOnce(), 32);
  }
  const back = readFileSync(join(dir, 'f.bin'));
  for (let i = 0; i < 32; i++) assert.ok(back.subarray(i * 64 * KiB, i * 64 * KiB + 4 * KiB).every((b) => b === i + 1), `write ${i}`);
});

for (const [where, root] of [['a disk file system (tmpdir)', tmpdir()], ['tmpfs', '/dev/shm']] as const) {
  test(`not opened for bulk writes, large writes on ${where} go to the thread pool side by side, each answered when it alone is done`, async (t) => {
    // An NBD server's 1 MiB sequential writes ran 8% slower queued: each reply waited for its group.
    const dir = await mkdtemp(join(root, 'qed-wq-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const watch = watchPooledWrites(t);
    const file = await NodeFile.create(join(dir, 'f.bin'));
    try {
      await Promise.all(Array.from({ length: 4 }, (_, i) => file.write(new Uint8Array(MiB).fill(i + 1), i * MiB)));
    } finally {
      await file.close();
    }
    assert.equal(watch.vectored(), 0);
    assert.equal(watch.calls(), 4, 'none copied on the main thread');
    assert.equal(watch.mostAtOnce(), 4);
    const back = readFileSync(join(dir, 'f.bin'));
    for (let i = 0; i < 4; i++) assert.ok(back.subarray(i * MiB, (i + 1) * MiB).every((b) => b === i + 1), `write ${i}`);
  });
}

test('overlapping writes issued together land in the order they were issued', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qed-wq-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = await NodeFile.create(join(dir, 'f.bin'), { bulkWrites: true });
  try {
    await Promise.all([
      file.write(new Uint8Array(2 * MiB).fill(1), 0),
      file.write(new Uint8Array(MiB).fill(2), MiB / 2),
      file.write(new Uint8Array(MiB).fill(3), MiB),
      file.write(new Uint8Array(512 * KiB).fill(4), 0),
    ]);
  } finally {
    await file.close();
  }
  const back = readFileSync(join(dir, 'f.bin'));
  const expect = (from: number, to: number, value: number) => assert.ok(back.subarray(from, to).every((b) => b === value), `${value} at ${from}..${to}`);
  expect(0, 512 * KiB, 4);
  expect(512 * KiB, MiB, 2);
  expect(MiB, 2 * MiB, 3);
});

test('a failed vectored write leaves each request to its own write, which reports its own error; the queue goes on', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qed-wq-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'f.bin');
  closeSync(openSync(path, 'w'));
  const readOnlyFd = openSync(path, 'r'); // writev fails with EBADF
  t.after(() => closeSync(readOnlyFd));
  const alone: Array<{ offset: number; done: number }> = [];
  const queue = new WriteQueue(() => readOnlyFd, async (buf, offset, done) => {
    alone.push({ offset, done });
    if (offset === 64 * KiB) throw new Error(`refused at ${offset}`);
  });
  const results = await Promise.allSettled([0, 64 * KiB, 128 * KiB, 192 * KiB].map((offset) => queue.write(new Uint8Array(64 * KiB), offset)));
  // The first went alone at once; the three queued behind it failed together and were retried one by one.
  assert.deepEqual(alone, [{ offset: 0, done: 0 }, { offset: 64 * KiB, done: 0 }, { offset: 128 * KiB, done: 0 }, { offset: 192 * KiB, done: 0 }]);
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
  assert.match(String((results[1] as PromiseRejectedResult).reason), /refused at 65536/);
  await queue.whenIdle();
  assert.equal(queue.idle, true);
  await queue.write(new Uint8Array(1), 0);
  assert.equal(alone.length, 5, 'a later write is still taken');
});

test('a short vectored write answers the requests it covered and finishes the one it stopped inside', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qed-wq-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const fd = openSync(join(dir, 'f.bin'), 'w+');
  t.after(() => closeSync(fd));
  const fs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
  const { writev } = fs;
  // A vectored write that stops 1000 bytes into its second buffer, as a full disk may.
  fs.writev = ((fd: number, buffers: Uint8Array[], position: number, callback: (err: Error | null, written: number) => void) => {
    writeSync(fd, buffers[0]!, 0, buffers[0]!.length, position);
    writeSync(fd, buffers[1]!, 0, 1000, position + buffers[0]!.length);
    callback(null, buffers[0]!.length + 1000);
  }) as typeof fs.writev;
  syncBuiltinESMExports();
  t.after(() => { fs.writev = writev; syncBuiltinESMExports(); });
  const alone: Array<{ offset: number; done: number }> = [];
  const queue = new WriteQueue(() => fd, async (buf, offset, done) => {
    alone.push({ offset, done });
    writeSync(fd, buf, done, buf.length - done, offset + done);
  });
  await Promise.all([0, 1, 2, 3].map((i) => queue.write(new Uint8Array(4 * KiB).fill(i + 1), i * 4 * KiB)));
  // The first alone; of the three behind it, the second stopped 1000 bytes in, the third not begun.
  assert.deepEqual(alone, [{ offset: 0, done: 0 }, { offset: 8 * KiB, done: 1000 }, { offset: 12 * KiB, done: 0 }]);
  const back = readFileSync(join(dir, 'f.bin'));
  for (let i = 0; i < 4; i++) assert.ok(back.subarray(i * 4 * KiB, (i + 1) * 4 * KiB).every((b) => b === i + 1), `block ${i}`);
});

test('closing a file waits for the large writes it accepted', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qed-wq-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = await NodeFile.create(join(dir, 'f.bin'), { bulkWrites: true });
  const writes = [0, 1, 2, 3].map((i) => file.write(new Uint8Array(MiB).fill(0x20 + i), i * 2 * MiB));
  await file.close();
  await Promise.all(writes);
  const back = readFileSync(join(dir, 'f.bin'));
  for (let i = 0; i < 4; i++) assert.ok(back.subarray(i * 2 * MiB, i * 2 * MiB + MiB).every((b) => b === 0x20 + i), `write ${i}`);
});
