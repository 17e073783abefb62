// `qed commit` against `qemu-img commit` on identical chains built in two directories: the
// backing file must end with the overlay's guest content (data and zero clusters, grown to the
// overlay's size), as qemu-img leaves it; -d keeps the overlay; without -d qed also empties
// the overlay (QEMU 7.2 cannot empty a QED overlay), which must still read the same.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  KiB, MiB, assertQemuClean, assertSameGuest, fileSize, guestBytes, mapShape, noise, ok, qed, qemuCheck, qemuImg, qemuMap,
  qemuWrite, scratch, sha256, writeRaw, type Ran,
} from '../support/cli-run.js';

type BaseKind = 'raw' | 'qed';

/** The same chain in dir/theirs and dir/mine: base (1 MiB) ← ov.qed (2 MiB) with data, a zero cluster and data past the base. */
async function twoChains(dir: string, kind: BaseKind): Promise<{ theirs: string; mine: string }> {
  const out = { theirs: join(dir, 'theirs'), mine: join(dir, 'mine') };
  for (const d of [out.theirs, out.mine]) {
    await mkdir(d);
    if (kind === 'raw') {
      await writeRaw(join(d, 'base.raw'), noise(MiB, 0xc0));
    } else {
      await ok('create base', qemuImg(['create', '-q', '-f', 'qed', 'base.qed', '1M'], d));
      await qemuWrite(d, 'base.qed', ['write -P 1 0 1M']);
    }
    await ok('create overlay', qemuImg(['create', '-q', '-f', 'qed', '-b', `base.${kind}`, '-F', kind, 'ov.qed', '2M'], d));
    await qemuWrite(d, 'ov.qed', ['write -P 5 128k 4k', 'write -z 512k 64k', 'write -P 6 1500k 128k']);
    await ok('reference', qemuImg(['convert', '-O', 'raw', 'ov.qed', 'expect.raw'], d));
  }
  return out;
}

function assertSameRun(mine: Ran, theirs: Ran): void {
  assert.equal(theirs.code, 0, theirs.stderr);
  assert.equal(mine.code, 0, mine.stderr);
  assert.equal(mine.stdout, theirs.stdout);
  assert.equal(mine.stdout, 'Image committed.\n');
}

describe('qed commit', { concurrency: 2 }, () => {
  it('writes the overlay into a raw backing file, growing it, byte-identical to what qemu-img commit leaves; then empties the overlay, which reads the same', async (t) => {
    const dir = await scratch(t);
    const { theirs, mine } = await twoChains(dir, 'raw');
    assertSameRun(await qed(['commit', 'ov.qed'], mine), await qemuImg(['commit', 'ov.qed'], theirs));
    assert.equal(await fileSize(join(mine, 'base.raw')), 2 * MiB, 'grown to the overlay size');
    assert.equal(await sha256(join(mine, 'base.raw')), await sha256(join(theirs, 'base.raw')), 'base as qemu-img commit leaves it');
    await assertSameGuest(mine, 'base.raw', 'expect.raw', ['-f', 'raw', '-F', 'raw']);

    // qed empties the overlay (QEMU 7.2 leaves it full): nothing allocated, same guest view.
    await assertQemuClean(mine, 'ov.qed');
    assert.equal((await qemuCheck(mine, 'ov.qed')).report['allocated-clusters'], undefined, 'overlay emptied');
    assert.ok((await qemuMap(mine, 'ov.qed')).every((e) => e.depth === 1), 'every range now comes from the backing file');
    await assertSameGuest(mine, 'ov.qed', 'expect.raw');
  });

  it('-d keeps the overlay byte-identical, as qemu-img commit -d does', async (t) => {
    const dir = await scratch(t);
    const { theirs, mine } = await twoChains(dir, 'raw');
    const before = await sha256(join(mine, 'ov.qed'));
    assertSameRun(await qed(['commit', '-d', 'ov.qed'], mine), await qemuImg(['commit', '-d', 'ov.qed'], theirs));
    assert.equal(await sha256(join(mine, 'ov.qed')), before);
    await assertQemuClean(mine, 'ov.qed');
    assert.equal(await sha256(join(mine, 'base.raw')), await sha256(join(theirs, 'base.raw')));
    await assertSameGuest(mine, 'ov.qed', 'expect.raw');
  });

  it('commits into a smaller QED backing file: grown, the guest content and allocation as qemu-img leaves them, and qemu-img check clean', async (t) => {
    const dir = await scratch(t);
    const { theirs, mine } = await twoChains(dir, 'qed');
    assertSameRun(await qed(['commit', '-d', 'ov.qed'], mine), await qemuImg(['commit', '-d', 'ov.qed'], theirs));
    await assertQemuClean(mine, 'base.qed');
    await assertSameGuest(mine, 'base.qed', 'expect.raw');
    const theirsBase = await guestBytes(theirs, 'base.qed');
    assert.ok((await guestBytes(mine, 'base.qed')).equals(theirsBase), 'same base content as qemu-img commit');
    assert.deepEqual(mapShape(await qemuMap(mine, 'base.qed')), mapShape(await qemuMap(theirs, 'base.qed')), 'same allocation');
    assert.equal((await guestBytes(mine, 'base.qed')).length, 2 * MiB);
    assert.equal(theirsBase.subarray(512 * KiB, 576 * KiB).every((b) => b === 0), true, 'the zero cluster was committed');
  });

  it('fails with exit 1 like qemu-img, one error line, and no change, on an image without a backing file or a missing one', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'plain.qed', '1M'], dir));
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-u', '-b', 'gone.raw', '-F', 'raw', 'orphan.qed', '1M'], dir));
    for (const image of ['plain.qed', 'orphan.qed', 'missing.qed']) {
      const digest = image === 'missing.qed' ? '' : await sha256(join(dir, image));
      const theirs = await qemuImg(['commit', image], dir);
      const mine = await qed(['commit', image], dir);
      assert.equal(theirs.code, 1, image);
      assert.equal(mine.code, 1, image);
      assert.equal(mine.stdout, '');
      assert.match(mine.stderr, new RegExp(`^qed: commit: ${image.replace('.', '\\.')}: [^\\n]+\\n$`));
      if (digest) assert.equal(await sha256(join(dir, image)), digest, `${image} unchanged`);
    }
  });

  it('-p draws nothing when stdout is not a terminal', async (t) => {
    const dir = await scratch(t);
    const { mine } = await twoChains(dir, 'raw');
    assert.deepEqual(await qed(['commit', '-p', 'ov.qed'], mine), { stdout: 'Image committed.\n', stderr: '', code: 0 });
    await assertQemuClean(mine, 'ov.qed');
    await assertSameGuest(mine, 'ov.qed', 'expect.raw');
  });
});
