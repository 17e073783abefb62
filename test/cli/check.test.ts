// `qed check` on sound images and on files it cannot check: the same report, text and exit
// code as `qemu-img check` (0 clean, 1 could not check, 3 leaks only, 63 format without
// checks), -q printing nothing, and the NEED_CHECK bit handled as QEMU handles it.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  KiB, appendBytes, featuresOf, fileSize, noise, ok, parseJson, patchBytes, qed, qemuCheck, qemuImg, qemuWrite,
  readLayout, scratch, writeRaw, type CheckJson,
} from '../support/cli-run.js';

function withoutEndOffset(report: CheckJson): CheckJson {
  const { 'image-end-offset': _end, ...rest } = report;
  return rest;
}

/** Both tools on the same file: JSON equal but for qed's image-end-offset, human text equal but for its line. */
async function assertSameCheck(dir: string, image: string, expectedCode: number): Promise<CheckJson> {
  const theirs = await qemuCheck(dir, image);
  const mine = await qed(['check', '--output=json', image], dir);
  assert.equal(theirs.code, expectedCode, theirs.ran.stdout);
  assert.equal(mine.code, theirs.code, mine.stdout + mine.stderr);
  const report = parseJson<CheckJson>('qed check', mine);
  assert.deepEqual(withoutEndOffset(report), theirs.report);
  assert.deepEqual(Object.keys(withoutEndOffset(report)), Object.keys(theirs.report), 'key order');
  const humanTheirs = await qemuImg(['check', image], dir);
  const humanMine = await qed(['check', image], dir);
  assert.equal(humanMine.code, humanTheirs.code);
  assert.equal(humanMine.stdout.replace(/^Image end offset: \d+\n/m, ''), humanTheirs.stdout);
  return report;
}

describe('qed check', { concurrency: 2 }, () => {
  it('reports a sound image with data, zero clusters and fragmentation exactly as qemu-img check does, plus the end of the used space', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-o', 'cluster_size=4k', 'a.qed', '3M'], dir));
    await qemuWrite(dir, 'a.qed', ['write -P 1 0 8k', 'write -P 2 2M 12k', 'write -z 64k 8k', 'write -P 3 4k 4k', 'write -P 4 1M 4k']);
    const report = await assertSameCheck(dir, 'a.qed', 0);
    assert.ok((report['fragmented-clusters'] ?? 0) > 0, 'the fixture is fragmented');
    assert.equal(report['image-end-offset'], await fileSize(join(dir, 'a.qed')), 'nothing leaked: the used space ends at the end of the file');
  });

  it('reports an empty image as qemu-img does (no allocated-clusters key, no statistics line)', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'e.qed', '1M'], dir));
    const report = await assertSameCheck(dir, 'e.qed', 0);
    assert.equal(report['allocated-clusters'], undefined);
    assert.equal((await qed(['check', 'e.qed'], dir)).stdout, 'No errors were found on the image.\nImage end offset: 327680\n');
  });

  it('exits 63 on a raw image, as qemu-img does for a format without checks, with one error line', async (t) => {
    const dir = await scratch(t);
    await writeRaw(join(dir, 'r.raw'), noise(64 * KiB, 1));
    const theirs = await qemuImg(['check', 'r.raw'], dir);
    const mine = await qed(['check', 'r.raw'], dir);
    assert.equal(theirs.code, 63);
    assert.equal(mine.code, 63);
    assert.equal(mine.stdout, '');
    assert.match(mine.stderr, /^qed: check: r\.raw: [^\n]+\n$/);
  });

  it('exits 1 on a missing file, as qemu-img does, with one error line and no stack', async (t) => {
    const dir = await scratch(t);
    const theirs = await qemuImg(['check', 'missing.qed'], dir);
    const mine = await qed(['check', 'missing.qed'], dir);
    assert.equal(theirs.code, 1);
    assert.equal(mine.code, 1);
    assert.match(mine.stderr, /^qed: check: missing\.qed: [^\n]+\n$/);
  });

  it('-q prints nothing and keeps the exit code (3 for a leak), as qemu-img check -q', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'a.qed', '1M'], dir));
    await qemuWrite(dir, 'a.qed', ['write -P 9 0 4k']);
    await appendBytes(join(dir, 'a.qed'), new Uint8Array(64 * KiB));
    const theirs = await qemuImg(['check', '-q', 'a.qed'], dir);
    const mine = await qed(['check', '-q', 'a.qed'], dir);
    assert.equal(theirs.code, 3);
    assert.deepEqual(mine, { stdout: '', stderr: '', code: 3 });
  });

  it('leaves NEED_CHECK set on a plain check and clears it with -r all, as qemu-img does', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'a.qed', '1M'], dir));
    await qemuWrite(dir, 'a.qed', ['write -P 9 0 4k']);
    const path = join(dir, 'a.qed');
    const features = Number((await readLayout(path)).features);
    await patchBytes(path, 16, Uint8Array.of(features | 0x2));
    await copyFile(path, join(dir, 'b.qed'));

    await ok('qemu-img check', qemuImg(['check', 'b.qed'], dir));
    const mine = await qed(['check', 'a.qed'], dir);
    assert.equal(mine.code, 0);
    assert.equal(await featuresOf(join(dir, 'b.qed')) & 0x2n, 0x2n, 'qemu-img check leaves the bit');
    assert.equal(await featuresOf(path) & 0x2n, 0x2n, 'qed check leaves the bit');

    await ok('qemu-img check -r all', qemuImg(['check', '-r', 'all', 'b.qed'], dir));
    const repair = await qed(['check', '-r', 'all', 'a.qed'], dir);
    assert.equal(repair.code, 0, repair.stderr);
    assert.equal(await featuresOf(join(dir, 'b.qed')) & 0x2n, 0n, 'qemu-img check -r all clears the bit');
    assert.equal(await featuresOf(path) & 0x2n, 0n, 'qed check -r all clears the bit');
    assert.equal((await qemuCheck(dir, 'a.qed')).code, 0);
  });
});
