// `qed rebase` against `qemu-img rebase` on identical chains in two directories: safe mode to
// a different backing file keeps the guest content and allocates what qemu-img allocates; -u
// changes only the recorded backing file; -b "" flattens.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  KiB, MiB, assertQemuClean, assertSameGuest, guestBytes, mapShape, noise, ok, parseJson, qed, qemuCheck, qemuImg, qemuMap,
  qemuWrite, readLayout, scratch, sha256, writeRaw, type Ran,
} from '../support/cli-run.js';

/** base.raw and other.raw (sharing their first 256 KiB), ov.qed over base.raw, in dir/theirs and dir/mine. */
async function twoChains(dir: string): Promise<{ theirs: string; mine: string }> {
  const out = { theirs: join(dir, 'theirs'), mine: join(dir, 'mine') };
  const base = noise(MiB, 0xba5e);
  const other = noise(MiB, 0x07e4);
  other.set(base.subarray(0, 256 * KiB));
  for (const d of [out.theirs, out.mine]) {
    await mkdir(d);
    await writeRaw(join(d, 'base.raw'), base);
    await writeRaw(join(d, 'other.raw'), other);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-b', 'base.raw', '-F', 'raw', 'ov.qed', '1M'], d));
    await qemuWrite(d, 'ov.qed', ['write -P 5 128k 4k', 'write -z 512k 64k', 'write -P 6 896k 64k']);
    await ok('reference', qemuImg(['convert', '-O', 'raw', 'ov.qed', 'expect.raw'], d));
  }
  return out;
}

async function info(dir: string, image: string): Promise<Record<string, unknown>> {
  const r = await ok('qemu-img info', qemuImg(['info', '--output=json', image], dir));
  const { 'actual-size': _actual, ...rest } = parseJson<Record<string, unknown>>('qemu-img info', r);
  return rest;
}

function assertSameRun(mine: Ran, theirs: Ran): void {
  assert.equal(theirs.code, 0, theirs.stderr);
  assert.equal(mine.code, 0, mine.stderr);
  assert.equal(mine.stdout, theirs.stdout);
}

describe('qed rebase', { concurrency: 2 }, () => {
  it('safe mode onto a different backing file keeps the guest content and allocates exactly what qemu-img rebase allocates', async (t) => {
    const dir = await scratch(t);
    const { theirs, mine } = await twoChains(dir);
    const args = ['rebase', '-b', 'other.raw', '-F', 'raw', 'ov.qed'];
    assertSameRun(await qed(args, mine), await qemuImg(args, theirs));
    await assertSameGuest(mine, 'ov.qed', 'expect.raw');
    await assertQemuClean(mine, 'ov.qed');
    assert.deepEqual(await info(mine, 'ov.qed'), await info(theirs, 'ov.qed'), 'qemu-img info of the result');
    assert.equal((await info(mine, 'ov.qed'))['backing-filename'], 'other.raw');
    assert.deepEqual(mapShape(await qemuMap(mine, 'ov.qed')), mapShape(await qemuMap(theirs, 'ov.qed')), 'same allocation');
    assert.equal((await qemuCheck(mine, 'ov.qed')).report['allocated-clusters'], (await qemuCheck(theirs, 'ov.qed')).report['allocated-clusters']);
  });

  it('safe mode onto a QED backing file keeps the guest content and records the backing without the raw-format bit', async (t) => {
    const dir = await scratch(t);
    const { theirs, mine } = await twoChains(dir);
    for (const d of [theirs, mine]) await ok('convert', qemuImg(['convert', '-O', 'qed', 'other.raw', 'other.qed'], d));
    const args = ['rebase', '-b', 'other.qed', '-F', 'qed', 'ov.qed'];
    assertSameRun(await qed(args, mine), await qemuImg(args, theirs));
    await assertSameGuest(mine, 'ov.qed', 'expect.raw');
    await assertQemuClean(mine, 'ov.qed');
    assert.deepEqual(await info(mine, 'ov.qed'), await info(theirs, 'ov.qed'));
    assert.equal((await readLayout(join(mine, 'ov.qed'))).features, 0x1n, 'backing file bit only: a QED backing is probed when opened');
  });

  it('-u changes only the recorded backing file, as qemu-img rebase -u: data untouched, the new backing shows through', async (t) => {
    const dir = await scratch(t);
    const { theirs, mine } = await twoChains(dir);
    const cluster = (await readLayout(join(mine, 'ov.qed'))).clusterSize;
    const before = (await readFile(join(mine, 'ov.qed'))).subarray(cluster);
    const args = ['rebase', '-u', '-b', 'other.raw', '-F', 'raw', 'ov.qed'];
    assertSameRun(await qed(args, mine), await qemuImg(args, theirs));
    assert.ok((await readFile(join(mine, 'ov.qed'))).subarray(cluster).equals(before), 'nothing after the header cluster changed');
    assert.deepEqual(await info(mine, 'ov.qed'), await info(theirs, 'ov.qed'));
    assert.ok((await guestBytes(mine, 'ov.qed')).equals(await guestBytes(theirs, 'ov.qed')), 'the same guest view as after qemu-img rebase -u');
    assert.ok(!(await guestBytes(mine, 'ov.qed')).equals(await readFile(join(mine, 'expect.raw'))), 'unsafe: the content changed with the backing');
    await assertQemuClean(mine, 'ov.qed');
  });

  it('-b "" flattens: no backing file, the same guest content and the same allocation as qemu-img rebase -b ""', async (t) => {
    const dir = await scratch(t);
    const { theirs, mine } = await twoChains(dir);
    const args = ['rebase', '-b', '', 'ov.qed'];
    assertSameRun(await qed(args, mine), await qemuImg(args, theirs));
    assert.equal((await readLayout(join(mine, 'ov.qed'))).features, 0n, 'backing bits cleared');
    assert.deepEqual(await info(mine, 'ov.qed'), await info(theirs, 'ov.qed'));
    await assertSameGuest(mine, 'ov.qed', 'expect.raw');
    await assertQemuClean(mine, 'ov.qed');
    assert.deepEqual(mapShape(await qemuMap(mine, 'ov.qed')), mapShape(await qemuMap(theirs, 'ov.qed')));
  });

  it('a missing new backing file fails in safe mode with exit 1 like qemu-img, one error line, and the image unchanged', async (t) => {
    const dir = await scratch(t);
    const { theirs, mine } = await twoChains(dir);
    const digest = await sha256(join(mine, 'ov.qed'));
    const args = ['rebase', '-b', 'gone.raw', '-F', 'raw', 'ov.qed'];
    const q = await qemuImg(args, theirs);
    const m = await qed(args, mine);
    assert.equal(q.code, 1);
    assert.equal(m.code, 1);
    assert.match(m.stderr, /^qed: rebase: [^\n]+\n$/);
    assert.equal(await sha256(join(mine, 'ov.qed')), digest);
  });

  it('safe mode allocates the clusters it copies in guest order, so the overlay maps host-contiguous runs exactly as qemu-img rebase leaves them', async (t) => {
    const dir = await scratch(t);
    for (const d of [join(dir, 'theirs'), join(dir, 'mine')]) {
      await mkdir(d);
      await writeRaw(join(d, 'old.raw'), noise(2 * MiB, 0x01d));
      await writeRaw(join(d, 'new.raw'), noise(2 * MiB, 0x4e3));
      await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-b', 'old.raw', '-F', 'raw', 'ov.qed', '2M'], d));
    }
    await ok('qemu-img rebase', qemuImg(['rebase', '-f', 'qed', '-b', 'new.raw', '-F', 'raw', 'ov.qed'], join(dir, 'theirs')));
    await ok('qed rebase', qed(['rebase', '-f', 'qed', '-b', 'new.raw', '-F', 'raw', 'ov.qed'], join(dir, 'mine')));
    // qemu-img map's human output merges runs only where they are host-contiguous; the engines
    // place tables differently, so the host offsets themselves (column 3) may differ.
    const humanMap = async (d: string) => (await ok('qemu-img map', qemuImg(['map', 'ov.qed'], join(dir, d)))).stdout
      .split('\n').map((line) => line.split(/\s+/).filter((_, i) => i !== 2).join(' ')).join('\n');
    assert.equal(await humanMap('mine'), await humanMap('theirs'));
  });

  it('-p draws nothing when stdout is not a terminal', async (t) => {
    const dir = await scratch(t);
    const { mine } = await twoChains(dir);
    assert.deepEqual(await qed(['rebase', '-p', '-b', 'other.raw', '-F', 'raw', 'ov.qed'], mine), { stdout: '', stderr: '', code: 0 });
    await assertSameGuest(mine, 'ov.qed', 'expect.raw');
    await assertQemuClean(mine, 'ov.qed');
  });
});
