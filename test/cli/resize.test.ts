// `qed resize` against `qemu-img resize` on copies of the same image: growing (+N and
// absolute) gives the same bytes as qemu-img; every refusal (shrinking QED, a size that is no
// sector multiple, beyond the L1 capacity, shrinking raw without --shrink) exits 1 as
// qemu-img does, with one clear line, and leaves the file byte-identical.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MiB, assertQemuClean, fileSize, noise, ok, qed, qemuImg, qemuWrite, readLayout, scratch, sha256, writeRaw } from '../support/cli-run.js';

/** mine.qed and theirs.qed: the same 1 MiB image with data in it. */
async function twoCopies(dir: string): Promise<void> {
  await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'mine.qed', '1M'], dir));
  await qemuWrite(dir, 'mine.qed', ['write -P 5 128k 4k', 'write -P 6 960k 64k']);
  await copyFile(join(dir, 'mine.qed'), join(dir, 'theirs.qed'));
}

describe('qed resize', { concurrency: 2 }, () => {
  for (const [size, bytes] of [['+1M', 2 * MiB], ['5M', 5 * MiB], ['+1536k', 2.5 * MiB], ['64T', 64 * 2 ** 40]] as const) {
    it(`grows a QED image to ${size} byte-identically to qemu-img resize, data untouched, check clean`, async (t) => {
      const dir = await scratch(t);
      await twoCopies(dir);
      const theirs = await qemuImg(['resize', 'theirs.qed', size], dir);
      const mine = await qed(['resize', 'mine.qed', size], dir);
      assert.equal(theirs.code, 0, theirs.stderr);
      assert.deepEqual(mine, { stdout: 'Image resized.\n', stderr: '', code: 0 });
      assert.equal(mine.stdout, theirs.stdout);
      assert.equal(await sha256(join(dir, 'mine.qed')), await sha256(join(dir, 'theirs.qed')));
      assert.equal((await readLayout(join(dir, 'mine.qed'))).imageSize, bytes);
      await assertQemuClean(dir, 'mine.qed');
    });
  }

  it('refuses to shrink a QED image (with or without --shrink, absolute or -N) with a clear error, exit 1 like qemu-img, and no change', async (t) => {
    const dir = await scratch(t);
    await twoCopies(dir);
    const digest = await sha256(join(dir, 'mine.qed'));
    for (const args of [['mine.qed', '512k'], ['--shrink', 'mine.qed', '512k'], ['mine.qed', '-512k'], ['mine.qed', '0']]) {
      const theirs = await qemuImg(['resize', ...args.map((a) => a.replace('mine', 'theirs'))], dir);
      const mine = await qed(['resize', ...args], dir);
      assert.equal(theirs.code, 1, args.join(' '));
      assert.equal(mine.code, 1, args.join(' '));
      assert.equal(mine.stdout, '');
      assert.match(mine.stderr, /^qed: resize: mine\.qed: [^\n]*shrink[^\n]*\n$/i, args.join(' '));
      assert.equal(await sha256(join(dir, 'mine.qed')), digest, `unchanged after qed resize ${args.join(' ')}`);
    }
  });

  it('refuses a size that is no multiple of 512 or beyond the L1 capacity, exit 1 like qemu-img, and no change', async (t) => {
    const dir = await scratch(t);
    await twoCopies(dir);
    const digest = await sha256(join(dir, 'mine.qed'));
    for (const size of ['+1000', '1049000', '65T']) {
      const theirs = await qemuImg(['resize', 'theirs.qed', size], dir);
      const mine = await qed(['resize', 'mine.qed', size], dir);
      assert.equal(theirs.code, 1, size);
      assert.equal(mine.code, 1, size);
      assert.match(mine.stderr, /^qed: resize: mine\.qed: [^\n]+\n$/);
      assert.equal(await sha256(join(dir, 'mine.qed')), digest, `unchanged after qed resize ${size}`);
    }
  });

  it('shrinks a raw file only with --shrink, as qemu-img does; grows it as qemu-img does', async (t) => {
    const dir = await scratch(t);
    for (const name of ['mine.raw', 'theirs.raw']) await writeRaw(join(dir, name), noise(MiB, 4));
    const digest = await sha256(join(dir, 'mine.raw'));
    const refusedTheirs = await qemuImg(['resize', '-f', 'raw', 'theirs.raw', '512k'], dir);
    const refusedMine = await qed(['resize', '-f', 'raw', 'mine.raw', '512k'], dir);
    assert.equal(refusedTheirs.code, 1);
    assert.equal(refusedMine.code, 1);
    assert.match(refusedMine.stderr, /^qed: resize: mine\.raw: [^\n]*--shrink[^\n]*\n$/);
    assert.equal(await sha256(join(dir, 'mine.raw')), digest);

    for (const args of [['--shrink', '-f', 'raw', 'X', '512k'], ['-f', 'raw', 'X', '+1M']]) {
      const theirs = await qemuImg(['resize', ...args.map((a) => a.replace('X', 'theirs.raw'))], dir);
      const mine = await qed(['resize', ...args.map((a) => a.replace('X', 'mine.raw'))], dir);
      assert.equal(theirs.code, 0, theirs.stderr);
      assert.equal(mine.code, 0, mine.stderr);
      assert.equal(mine.stdout, theirs.stdout);
      assert.equal(await fileSize(join(dir, 'mine.raw')), await fileSize(join(dir, 'theirs.raw')));
      assert.equal(await sha256(join(dir, 'mine.raw')), await sha256(join(dir, 'theirs.raw')));
    }
    assert.equal(await fileSize(join(dir, 'mine.raw')), 1536 * 1024);
  });
});
