// `qed compare` against `qemu-img compare` on the same pairs: the same text on stdout and the
// same exit code (0 identical, 1 different, 2 error), with -f/-F, -s (strict) and -q.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MiB, noise, ok, qed, qemuImg, qemuWrite, scratch, writeRaw } from '../support/cli-run.js';

/** Both tools on the same arguments: same stdout, same exit code (which is returned). */
async function assertSameCompare(dir: string, args: readonly string[], expected: { code: number; stdout: string }): Promise<void> {
  const theirs = await qemuImg(['compare', ...args], dir);
  const mine = await qed(['compare', ...args], dir);
  assert.deepEqual({ code: theirs.code, stdout: theirs.stdout }, expected, `fixture: qemu-img compare ${args.join(' ')}\n${theirs.stderr}`);
  assert.deepEqual({ code: mine.code, stdout: mine.stdout }, expected, `qed compare ${args.join(' ')}\n${mine.stderr}`);
  assert.equal(mine.stderr, '', 'nothing on stderr');
}

/** a.qed (1 MiB, over base.raw) and a.raw with the same guest content. */
async function pair(dir: string): Promise<void> {
  await writeRaw(join(dir, 'base.raw'), noise(MiB, 3));
  await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-b', 'base.raw', '-F', 'raw', 'a.qed', '1M'], dir));
  await qemuWrite(dir, 'a.qed', ['write -P 1 0 64k', 'write -z 256k 64k', 'write -P 2 700k 4k']);
  await ok('convert', qemuImg(['convert', '-O', 'raw', 'a.qed', 'a.raw'], dir));
}

const IDENTICAL = { code: 0, stdout: 'Images are identical.\n' };

describe('qed compare', { concurrency: 2 }, () => {
  it('calls an overlay and its flattened raw copy identical, with or without -f/-F, as qemu-img does', async (t) => {
    const dir = await scratch(t);
    await pair(dir);
    await assertSameCompare(dir, ['a.qed', 'a.raw'], IDENTICAL);
    await assertSameCompare(dir, ['-f', 'qed', '-F', 'raw', 'a.qed', 'a.raw'], IDENTICAL);
    await assertSameCompare(dir, ['a.raw', 'a.qed'], IDENTICAL);
  });

  it('calls two QED images of different cluster sizes with the same content identical', async (t) => {
    const dir = await scratch(t);
    await pair(dir);
    await ok('convert', qemuImg(['convert', '-O', 'qed', '-o', 'cluster_size=4k', 'a.qed', 'b.qed'], dir));
    await assertSameCompare(dir, ['a.qed', 'b.qed'], IDENTICAL);
  });

  it('reports the first differing sector with qemu-img\'s text and exit 1, in written data and in backing data', async (t) => {
    const dir = await scratch(t);
    await pair(dir);
    await ok('copy', qemuImg(['convert', '-O', 'qed', 'a.qed', 'b.qed'], dir));
    await qemuWrite(dir, 'b.qed', ['write -P 0x77 70000 1']);
    await assertSameCompare(dir, ['a.qed', 'b.qed'], { code: 1, stdout: 'Content mismatch at offset 69632!\n' });
    // A difference inside what a.qed shows from its backing file.
    await ok('copy', qemuImg(['convert', '-O', 'raw', 'a.qed', 'c.raw'], dir));
    await qemuWrite(dir, 'c.raw', ['write -P 0 900001 1'], 'raw');
    await assertSameCompare(dir, ['a.qed', 'c.raw'], { code: 1, stdout: 'Content mismatch at offset 899584!\n' });
    // The overlay's own data against its backing file.
    await assertSameCompare(dir, ['-F', 'raw', 'a.qed', 'base.raw'], { code: 1, stdout: 'Content mismatch at offset 0!\n' });
  });

  it('warns about different sizes and still compares, as qemu-img does without -s', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'small.qed', '1M'], dir));
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'big.qed', '2M'], dir));
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'bigdata.qed', '2M'], dir));
    for (const image of ['small.qed', 'big.qed', 'bigdata.qed']) await qemuWrite(dir, image, ['write -P 1 0 64k']);
    await qemuWrite(dir, 'bigdata.qed', ['write -P 3 1500k 1']);
    await assertSameCompare(dir, ['small.qed', 'big.qed'], { code: 0, stdout: 'Warning: Image size mismatch!\nImages are identical.\n' });
    await assertSameCompare(dir, ['big.qed', 'small.qed'], { code: 0, stdout: 'Warning: Image size mismatch!\nImages are identical.\n' });
    await assertSameCompare(dir, ['small.qed', 'bigdata.qed'], { code: 1, stdout: 'Warning: Image size mismatch!\nContent mismatch at offset 1536000!\n' });
  });

  it('fails on different sizes with -s (strict), exit 1 and qemu-img\'s text', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'small.qed', '1M'], dir));
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'big.qed', '2M'], dir));
    await assertSameCompare(dir, ['-s', 'small.qed', 'big.qed'], { code: 1, stdout: 'Strict mode: Image size mismatch!\n' });
  });

  it('fails with -s (strict) where one image has data and the other a zero cluster, as qemu-img does', async (t) => {
    // qemu-img compare -s: "fail on different image size or sector allocation status".
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'data.qed', '1M'], dir));
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'zero.qed', '1M'], dir));
    await qemuWrite(dir, 'data.qed', ['write -P 0 64k 64k']);
    await qemuWrite(dir, 'zero.qed', ['write -z 64k 64k']);
    await assertSameCompare(dir, ['data.qed', 'zero.qed'], IDENTICAL);
    await assertSameCompare(dir, ['-s', 'data.qed', 'zero.qed'], { code: 1, stdout: 'Strict mode: Offset 65536 block status mismatch!\n' });
  });

  it('exits 2 with one error line when a file is missing, as qemu-img does', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'a.qed', '1M'], dir));
    for (const args of [['a.qed', 'missing.qed'], ['missing.qed', 'a.qed']]) {
      const theirs = await qemuImg(['compare', ...args], dir);
      const mine = await qed(['compare', ...args], dir);
      assert.equal(theirs.code, 2);
      assert.equal(mine.code, 2);
      assert.equal(mine.stdout, '');
      assert.match(mine.stderr, /^qed: compare: missing\.qed: [^\n]+\n$/);
    }
  });

  it('-q prints nothing and keeps the exit code, as qemu-img compare -q', async (t) => {
    const dir = await scratch(t);
    await pair(dir);
    await assertSameCompare(dir, ['-q', 'a.qed', 'a.raw'], { code: 0, stdout: '' });
    await assertSameCompare(dir, ['-q', '-F', 'raw', 'a.qed', 'base.raw'], { code: 1, stdout: '' });
  });
});
