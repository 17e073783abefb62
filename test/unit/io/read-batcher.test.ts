// Reads queued in one turn of the event loop that lie back to back become one preadv; each
// still gets exactly its own bytes. What a vectored read leaves undone (the file ends inside
// it, or it fails) is finished by the request's own read, which reports its own errors.
import test from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReadBatcher } from '../../../src/io/read-batcher.js';

const KiB = 1024;

async function scratchFile(t: test.TestContext, length: number): Promise<{ fd: number; content: Uint8Array }> {
  const dir = await mkdtemp(join(tmpdir(), 'qed-batch-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const content = new Uint8Array(length);
  for (let i = 0; i < length; i++) content[i] = (i * 13 + (i >> 10)) & 0xff;
  await writeFile(join(dir, 'f.bin'), content);
  const fd = openSync(join(dir, 'f.bin'), 'r');
  t.after(() => closeSync(fd));
  return { fd, content };
}

for (const copyInline of [false, true]) {
  test(`adjacent reads share one vectored read; the rest, and reads the file ends inside, are read on their own (copyInline ${copyInline})`, async (t) => {
    const { fd, content } = await scratchFile(t, 2 * 1024 * KiB + 100);
    const alone: Array<{ offset: number; done: number }> = [];
    const batcher = new ReadBatcher(() => fd, async (buf, offset, done) => {
      alone.push({ offset, done });
      const got = done + readSync(fd, buf, done, buf.length - done, offset + done);
      buf.fill(0, got);
      return got;
    }, copyInline);
    // Five back to back (given out of order), one apart, one across the end after its neighbour, one past the end.
    const requests = [[2 * 256 * KiB, 256 * KiB], [0, 256 * KiB], [4 * 256 * KiB, 256 * KiB], [256 * KiB, 256 * KiB], [3 * 256 * KiB, 256 * KiB],
      [7 * 256 * KiB + 512, 4 * KiB], [2 * 1024 * KiB, 4 * KiB], [2 * 1024 * KiB + 4 * KiB, 4 * KiB]] as const;
    const results = await Promise.all(requests.map(async ([offset, length]) => {
      const buf = new Uint8Array(length).fill(0xee);
      return { offset, length, buf, got: await batcher.read(buf, offset) };
    }));
    for (const { offset, length, buf, got } of results) {
      const expected = new Uint8Array(length);
      expected.set(content.subarray(offset, offset + length));
      assert.equal(got, Math.max(0, Math.min(length, content.length - offset)), `bytes at ${offset}`);
      assert.deepEqual(buf, expected, `content at ${offset}`);
    }
    assert.deepEqual(alone.sort((a, b) => a.offset - b.offset), [
      ...(copyInline ? [] : [{ offset: 7 * 256 * KiB + 512, done: 0 }]), // no neighbour: the pool, unless copied inline
      { offset: 2 * 1024 * KiB, done: 100 }, // the vectored read stopped at the end of the file inside it
      { offset: 2 * 1024 * KiB + 4 * KiB, done: 0 },
    ]);
  });
}

test('copied inline, a request too large to copy in one turn of the loop is read on its own', async (t) => {
  const { fd, content } = await scratchFile(t, 3 * 1024 * KiB);
  const alone: number[] = [];
  const batcher = new ReadBatcher(() => fd, async (buf, offset, done) => {
    alone.push(offset);
    return done + readSync(fd, buf, done, buf.length - done, offset + done);
  }, true);
  const big = new Uint8Array(3 * 1024 * KiB);
  const small = new Uint8Array(256 * KiB);
  assert.deepEqual(await Promise.all([batcher.read(big, 0), batcher.read(small, 0)]), [big.length, small.length]);
  assert.deepEqual(big, content);
  assert.deepEqual(small, content.subarray(0, small.length));
  assert.deepEqual(alone, [0], 'only the large one');
});

test('a vectored read that fails leaves each request to its own read, whose error it gets', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qed-batch-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const directory = openSync(dir, 'r'); // reading a directory fails with EISDIR
  t.after(() => closeSync(directory));
  for (const copyInline of [false, true]) {
    const failures: number[] = [];
    const batcher = new ReadBatcher(() => directory, async (_buf, offset) => { failures.push(offset); throw new Error(`read at ${offset} failed`); }, copyInline);
    const reads = [0, 4 * KiB].map((offset) => batcher.read(new Uint8Array(4 * KiB), offset));
    await assert.rejects(reads[0]!, /read at 0 failed/);
    await assert.rejects(reads[1]!, /read at 4096 failed/);
    assert.deepEqual(failures.sort((a, b) => a - b), [0, 4 * KiB], `copyInline ${copyInline}`);
  }
});
