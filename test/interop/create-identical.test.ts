// `qed create` writes the very file `qemu-img create -f qed` writes for the same options, and
// prints the same "Formatting ..." line: cluster sizes, table sizes 4 and 16, sizes that are
// not cluster (or sector) multiples, backing files with -F raw and -F qed, named relatively
// and absolutely, and sizes taken from the backing file.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Rng, describeRun, newScratchDir, qed, qemuImg, removeScratchDir, succeed, writeRawFile } from '../support/qemu.js';

let dir = '';
const common = (): string => join(dir, 'common');

before(async () => {
  dir = await newScratchDir();
  await mkdir(common());
  const rng = new Rng(7);
  await writeRawFile(join(common(), 'base.raw'), rng.bytes(3 * 1024 * 1024));
  await writeRawFile(join(common(), 'odd.raw'), rng.bytes(100000));
  await succeed('base qed', qemuImg(['create', '-q', '-f', 'qed', '-o', 'cluster_size=4096', '-b', 'base.raw', '-F', 'raw', 'mid.qed', '5M'], { cwd: common() }));
  // Each tool gets its own directory holding identical copies, so relative names resolve alike.
  for (const side of ['qemu', 'ours']) {
    await mkdir(join(dir, side));
    for (const file of ['base.raw', 'odd.raw', 'mid.qed']) await copyFile(join(common(), file), join(dir, side, file));
  }
});

after(() => removeScratchDir(dir));

let serial = 0;

/** Run both creates with the same arguments (FILE last but one or last) and compare everything. */
async function assertSameCreate(args: (file: string) => string[]): Promise<void> {
  const file = `image-${++serial}.qed`;
  const theirs = await qemuImg(['create', '-f', 'qed', ...args(file)], { cwd: join(dir, 'qemu') });
  const ours = await qed(['create', '-f', 'qed', ...args(file)], { cwd: join(dir, 'ours') });
  assert.equal(theirs.code, 0, describeRun('qemu-img create', theirs));
  assert.equal(ours.code, theirs.code, describeRun('qed create', ours));
  assert.equal(ours.stdout, theirs.stdout, 'the Formatting line');
  const expected = await readFile(join(dir, 'qemu', file));
  const actual = await readFile(join(dir, 'ours', file));
  assert.equal(actual.length, expected.length, 'file size');
  const firstDiff = expected.findIndex((b, i) => actual[i] !== b);
  assert.equal(firstDiff, -1, `first differing byte at offset 0x${firstDiff.toString(16)}`);
}

/** 8 MiB + 1536: a sector multiple, but not a multiple of any cluster size. */
const ODD_SIZE = String(8 * 1024 * 1024 + 3 * 512);
const OPTION_CASES: Array<[string, string[], string]> = [
  ['defaults, 1 GiB', [], '1G'],
  ['4 KiB clusters, table_size 4, size not a cluster multiple', ['-o', 'cluster_size=4096,table_size=4'], ODD_SIZE],
  ['4 KiB clusters, table_size 16', ['-o', 'cluster_size=4k,table_size=16'], ODD_SIZE],
  ['64 KiB clusters, table_size 16', ['-o', 'cluster_size=65536,table_size=16'], ODD_SIZE],
  ['1 MiB clusters, table_size 4', ['-o', 'cluster_size=1M,table_size=4'], ODD_SIZE],
  ['1 MiB clusters, table_size 16', ['-o', 'cluster_size=1M,table_size=16'], ODD_SIZE],
  ['options given as separate -o', ['-o', 'cluster_size=4k', '-o', 'table_size=16'], ODD_SIZE],
];

describe('qed create writes the bytes qemu-img create -f qed writes', () => {
  for (const [what, options, size] of OPTION_CASES) {
    test(`identical file and output: ${what}`, () => assertSameCreate((file) => [...options, file, size]));
  }

  test('identical file and output: the largest size 64 KiB clusters and table_size 4 allow (64 TiB)', () =>
    assertSameCreate((file) => ['-o', 'cluster_size=64k,table_size=4', file, '64T']));

  test('identical file and output: size 0', () => assertSameCreate((file) => [file, '0']));

  // qemu-img rounds 1000449 up to 1000960 and prints the size as given; a drop-in must not
  // make a script that relies on it fail (issue 14), so qed does the same.
  test('identical file and output: a size that is not a sector multiple is rounded up, as qemu-img does', () =>
    assertSameCreate((file) => [file, '1000449']));

  test('identical file and output: relative raw backing file with -F raw', () =>
    assertSameCreate((file) => ['-b', 'base.raw', '-F', 'raw', file, '4M']));

  test('identical file and output: relative QED backing file with -F qed', () =>
    assertSameCreate((file) => ['-o', 'cluster_size=4k,table_size=16', '-b', 'mid.qed', '-F', 'qed', file, '6M']));

  test('identical file and output: size taken from a raw backing file (rounded up to a sector)', () =>
    assertSameCreate((file) => ['-b', 'odd.raw', '-F', 'raw', file]));

  test('identical file and output: size taken from a QED backing file', () =>
    assertSameCreate((file) => ['-b', 'mid.qed', '-F', 'qed', file]));

  test('identical file and output: absolute raw backing name', () =>
    assertSameCreate((file) => ['-b', join(common(), 'base.raw'), '-F', 'raw', file, '2M']));

  test('identical file and output: absolute QED backing name', () =>
    assertSameCreate((file) => ['-o', 'cluster_size=1M', '-b', join(common(), 'mid.qed'), '-F', 'qed', file]));

  test('identical file and output: relative name climbing out of the directory (../common/base.raw)', () =>
    assertSameCreate((file) => ['-b', '../common/base.raw', '-F', 'raw', file, '3M']));

  test('identical file and output: backing file and format given with -o', () =>
    assertSameCreate((file) => ['-o', 'backing_file=base.raw,backing_fmt=raw,cluster_size=4096', file, '1M']));
});
