// `qed bench` against `qemu-img bench` on copies of the same image: the same two lines (the
// time aside), exit 0, and after -w an image that qemu-img check calls clean and that holds
// what qemu-img bench wrote into its copy.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { assertQemuClean, assertSameGuest, ok, qed, qemuImg, qemuWrite, scratch, sha256 } from '../support/cli-run.js';

const timing = (text: string) => text.replace(/^Run completed in \d+\.\d{3} seconds\.$/m, 'Run completed in <time> seconds.');

async function twoCopies(dir: string): Promise<void> {
  await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-o', 'cluster_size=4k', 'mine.qed', '4M'], dir));
  await qemuWrite(dir, 'mine.qed', ['write -P 3 0 64k']);
  await copyFile(join(dir, 'mine.qed'), join(dir, 'theirs.qed'));
}

describe('qed bench', { concurrency: 2 }, () => {
  for (const args of [
    ['-w', '-c', '2000', '-d', '8', '-s', '4k'],
    ['-w', '-c', '300', '-d', '4', '-s', '8k', '-S', '12k', '-o', '64k', '--pattern', '0x41'],
    ['-w', '-c', '500', '-d', '8', '--flush-interval', '64'],
  ]) {
    it(`bench ${args.join(' ')} prints qemu-img bench's lines, exits 0, and leaves a clean image with the same content`, async (t) => {
      const dir = await scratch(t);
      await twoCopies(dir);
      const theirs = await qemuImg(['bench', ...args, 'theirs.qed'], dir);
      const mine = await qed(['bench', ...args, 'mine.qed'], dir);
      assert.equal(theirs.code, 0, theirs.stderr);
      assert.equal(mine.code, 0, mine.stderr);
      assert.equal(mine.stderr, '');
      assert.equal(timing(mine.stdout), timing(theirs.stdout));
      assert.match(mine.stdout, /^Sending \d+ write requests, \d+ bytes each, \d+ in parallel \(starting at offset \d+, step size \d+\)\n(Sending flush every \d+ requests\n)?Run completed in \d+\.\d{3} seconds\.\n$/);
      await assertQemuClean(dir, 'mine.qed');
      await assertSameGuest(dir, 'mine.qed', 'theirs.qed');
    });
  }

  it('a read bench prints qemu-img bench\'s two lines, exits 0 and changes nothing', async (t) => {
    const dir = await scratch(t);
    await twoCopies(dir);
    const digest = await sha256(join(dir, 'mine.qed'));
    const args = ['-c', '1000', '-d', '16', '-s', '16k'];
    const theirs = await qemuImg(['bench', ...args, 'theirs.qed'], dir);
    const mine = await qed(['bench', ...args, 'mine.qed'], dir);
    assert.equal(theirs.code, 0);
    assert.equal(mine.code, 0, mine.stderr);
    assert.equal(timing(mine.stdout), timing(theirs.stdout));
    assert.equal(mine.stdout.split('\n').length, 3, 'two lines');
    assert.equal(await sha256(join(dir, 'mine.qed')), digest, 'a read bench writes nothing');
  });

  it('refuses a flush interval smaller than the depth with exit 1, as qemu-img bench does, and writes nothing', async (t) => {
    const dir = await scratch(t);
    await twoCopies(dir);
    const digest = await sha256(join(dir, 'mine.qed'));
    const args = ['-w', '-c', '100', '-d', '16', '--flush-interval', '10'];
    const theirs = await qemuImg(['bench', ...args, 'theirs.qed'], dir);
    const mine = await qed(['bench', ...args, 'mine.qed'], dir);
    assert.equal(theirs.code, 1);
    assert.equal(mine.code, 1, mine.stdout);
    assert.match(mine.stderr, /^qed: bench: [^\n]+\n$/);
    assert.equal(await sha256(join(dir, 'mine.qed')), digest);
  });

  it('-w on a QED image over a backing file leaves qemu-img check clean and the same content as qemu-img bench', async (t) => {
    const dir = await scratch(t);
    await ok('create base', qemuImg(['create', '-q', '-f', 'qed', 'base.qed', '4M'], dir));
    await qemuWrite(dir, 'base.qed', ['write -P 9 0 4M']);
    for (const name of ['mine.qed', 'theirs.qed']) {
      await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-b', 'base.qed', '-F', 'qed', name, '4M'], dir));
    }
    const args = ['-w', '-c', '200', '-d', '8', '-s', '1k', '-S', '5k'];
    const theirs = await qemuImg(['bench', ...args, 'theirs.qed'], dir);
    const mine = await qed(['bench', ...args, 'mine.qed'], dir);
    assert.equal(theirs.code, 0);
    assert.equal(mine.code, 0, mine.stderr);
    assert.equal(timing(mine.stdout), timing(theirs.stdout));
    await assertQemuClean(dir, 'mine.qed');
    await assertSameGuest(dir, 'mine.qed', 'theirs.qed');
  });
});
