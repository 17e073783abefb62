// `qed amend -o backing_file=F,backing_fmt=FMT`. QEMU 7.2 cannot amend a QED image ("does not
// support option amendment"); the same job through QEMU is `qemu-img rebase -u -b F -F FMT`.
// The two results must describe the same backing file to qemu-img info, show the same guest
// content, pass qemu-img check, and leave everything after the header cluster untouched.
import assert from 'node:assert/strict';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MiB, assertQemuClean, guestBytes, noise, ok, parseJson, qed, qemuImg, qemuWrite, readLayout, scratch, sha256, writeRaw } from '../support/cli-run.js';

/** a.raw, b.raw, c.qed (three possible backings) and mine.qed/theirs.qed over a.raw. */
async function fixture(dir: string): Promise<void> {
  await writeRaw(join(dir, 'a.raw'), noise(MiB, 0xa));
  await writeRaw(join(dir, 'b.raw'), noise(MiB, 0xb));
  await ok('convert', qemuImg(['convert', '-O', 'qed', 'b.raw', 'c.qed'], dir));
  await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-b', 'a.raw', '-F', 'raw', 'mine.qed', '1M'], dir));
  await qemuWrite(dir, 'mine.qed', ['write -P 5 128k 4k', 'write -z 512k 64k']);
  await copyFile(join(dir, 'mine.qed'), join(dir, 'theirs.qed'));
}

async function info(dir: string, image: string): Promise<Record<string, unknown>> {
  const r = await ok('qemu-img info', qemuImg(['info', '--output=json', image], dir));
  const { 'actual-size': _actual, filename: _name, ...rest } = parseJson<Record<string, unknown>>('qemu-img info', r);
  return rest;
}

describe('qed amend', { concurrency: 2 }, () => {
  it('qemu-img amend cannot change a QED image at all (the reason qed amend exists)', async (t) => {
    const dir = await scratch(t);
    await fixture(dir);
    const r = await qemuImg(['amend', '-o', 'backing_file=b.raw,backing_fmt=raw', 'theirs.qed'], dir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /does not support option amendment/);
  });

  for (const [file, fmt, bits] of [['b.raw', 'raw', 0x5n], ['c.qed', 'qed', 0x1n]] as const) {
    it(`backing_file=${file},backing_fmt=${fmt} records what qemu-img rebase -u records, touching nothing past the header`, async (t) => {
      const dir = await scratch(t);
      await fixture(dir);
      const cluster = (await readLayout(join(dir, 'mine.qed'))).clusterSize;
      const body = (await readFile(join(dir, 'mine.qed'))).subarray(cluster);
      const mine = await qed(['amend', '-o', `backing_file=${file},backing_fmt=${fmt}`, 'mine.qed'], dir);
      assert.deepEqual(mine, { stdout: '', stderr: '', code: 0 });
      await ok('qemu-img rebase -u', qemuImg(['rebase', '-u', '-b', file, '-F', fmt, 'theirs.qed'], dir));
      assert.deepEqual(await info(dir, 'mine.qed'), await info(dir, 'theirs.qed'));
      assert.equal((await info(dir, 'mine.qed'))['backing-filename'], file);
      assert.equal((await readLayout(join(dir, 'mine.qed'))).features, bits, 'feature bits');
      assert.ok((await guestBytes(dir, 'mine.qed')).equals(await guestBytes(dir, 'theirs.qed')), 'same guest view');
      assert.ok((await readFile(join(dir, 'mine.qed'))).subarray(cluster).equals(body), 'nothing after the header cluster changed');
      await assertQemuClean(dir, 'mine.qed');
    });
  }

  it('backing_fmt alone changes only the format of the recorded backing file', async (t) => {
    const dir = await scratch(t);
    await fixture(dir);
    await ok('qed amend', qed(['amend', '-o', 'backing_file=c.qed,backing_fmt=qed', 'mine.qed'], dir));
    await ok('qed amend', qed(['amend', '-o', 'backing_fmt=raw', 'mine.qed'], dir));
    await ok('qemu-img rebase -u', qemuImg(['rebase', '-u', '-b', 'c.qed', '-F', 'raw', 'theirs.qed'], dir));
    assert.deepEqual(await info(dir, 'mine.qed'), await info(dir, 'theirs.qed'));
    assert.equal((await readLayout(join(dir, 'mine.qed'))).features, 0x5n);
    await assertQemuClean(dir, 'mine.qed');
  });

  it('refuses options QED cannot change (cluster_size, size) with exit 1 like qemu-img amend, one error line, and no change', async (t) => {
    const dir = await scratch(t);
    await fixture(dir);
    const digest = await sha256(join(dir, 'mine.qed'));
    for (const opt of ['cluster_size=4096', 'size=2M', 'backing_file=b.raw,table_size=2']) {
      const theirs = await qemuImg(['amend', '-o', opt, 'theirs.qed'], dir);
      const mine = await qed(['amend', '-o', opt, 'mine.qed'], dir);
      assert.equal(theirs.code, 1, opt);
      assert.equal(mine.code, 1, opt);
      assert.match(mine.stderr, /^qed: amend: mine\.qed: [^\n]+\n$/, opt);
      assert.equal(await sha256(join(dir, 'mine.qed')), digest, `unchanged after -o ${opt}`);
    }
  });
});
