// `qed map` against `qemu-img map` on the same files: JSON runs and human lines byte for byte
// (depth, present, zero, data, host offset, merging of host-contiguous runs), --start-offset
// and --max-length clipping, and the exit code on metadata that cannot be read.
//
// Raw backing files here are written in full (no holes); sparse raw files are compared with
// qemu-img map in test/interop/sparse-raw.test.ts.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { KiB, l2EntryFor, noise, ok, patchU64, qed, qemuImg, qemuWrite, scratch, writeRaw } from '../support/cli-run.js';

/** Both tools, same arguments, same directory: identical stdout and exit code. */
async function assertSameMap(dir: string, args: readonly string[]): Promise<string> {
  const theirs = await qemuImg(['map', ...args], dir);
  const mine = await qed(['map', ...args], dir);
  assert.equal(theirs.code, 0, theirs.stderr);
  assert.equal(mine.code, 0, mine.stderr);
  assert.equal(mine.stdout, theirs.stdout, `qed map ${args.join(' ')}`);
  return mine.stdout;
}

describe('qed map', { concurrency: 2 }, () => {
  it('prints the same JSON and human map as qemu-img for data, zero clusters and unaligned zero writes', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'a.qed', '1M'], dir));
    await qemuWrite(dir, 'a.qed', ['write -P 1 0 64k', 'write -P 2 64k 64k', 'write -P 3 256k 4k', 'write -z 512k 128k', 'write -z 768k 1000']);
    const json = await assertSameMap(dir, ['--output=json', 'a.qed']);
    assert.match(json, /"zero": true, "data": false}/, 'zero clusters are in the fixture');
    const human = await assertSameMap(dir, ['a.qed']);
    assert.match(human, /^Offset {10}Length {10}Mapped to {7}File\n/);
    await assertSameMap(dir, ['--output=human', 'a.qed']);
  });

  it('prints the same map as qemu-img for an empty image', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'e.qed', '1M'], dir));
    assert.equal(await assertSameMap(dir, ['--output=json', 'e.qed']),
      '[{ "start": 0, "length": 1048576, "depth": 0, "present": false, "zero": true, "data": false}]\n');
    await assertSameMap(dir, ['e.qed']);
  });

  it('prints the same map as qemu-img for an overlay over a raw file shorter than the overlay (depth, backing offsets, zeros past its end)', async (t) => {
    const dir = await scratch(t);
    await writeRaw(join(dir, 'base.raw'), noise(100000, 7));
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-b', 'base.raw', '-F', 'raw', 'ov.qed', '1M'], dir));
    await qemuWrite(dir, 'ov.qed', ['write -P 5 64k 4k', 'write -z 512k 64k', 'write -P 6 640k 128k']);
    const json = await assertSameMap(dir, ['--output=json', 'ov.qed']);
    assert.match(json, /"depth": 1/);
    const human = await assertSameMap(dir, ['ov.qed']);
    assert.match(human, /base\.raw\n/);
    assert.match(human, /ov\.qed\n/);
  });

  it('prints the same map as qemu-img through a QED → QED → raw chain', async (t) => {
    const dir = await scratch(t);
    await writeRaw(join(dir, 'base.raw'), noise(300 * KiB, 8));
    await ok('create mid', qemuImg(['create', '-q', '-f', 'qed', '-o', 'cluster_size=4k', '-b', 'base.raw', '-F', 'raw', 'mid.qed', '2M'], dir));
    await qemuWrite(dir, 'mid.qed', ['write -P 1 100k 8k', 'write -z 200k 4k', 'write -P 2 1M 64k']);
    await ok('create top', qemuImg(['create', '-q', '-f', 'qed', '-b', 'mid.qed', '-F', 'qed', 'top.qed', '2M'], dir));
    await qemuWrite(dir, 'top.qed', ['write -P 3 0 64k', 'write -z 1M 64k', 'write -P 4 1984k 64k']);
    const json = await assertSameMap(dir, ['--output=json', 'top.qed']);
    assert.match(json, /"depth": 2/);
    await assertSameMap(dir, ['top.qed']);
  });

  it('clips to --start-offset/--max-length (and -s/-l) exactly as qemu-img does, across L2 table boundaries', async (t) => {
    const dir = await scratch(t);
    // 4 KiB clusters, table_size 2: one L2 table maps 4 MiB.
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-o', 'cluster_size=4k,table_size=2', 'a.qed', '12M'], dir));
    await qemuWrite(dir, 'a.qed', ['write -P 1 0 64k', 'write -P 2 4088k 16k', 'write -z 5M 64k', 'write -P 3 8M 4k', 'write -P 4 100k 12k']);
    await assertSameMap(dir, ['--output=json', 'a.qed']);
    for (const range of [
      ['-s', '64k', '-l', '300k'],
      ['--start-offset=4090k', '--max-length=20k'],
      ['--start-offset', '100000', '--max-length', '5000'],
      ['-l', '5M'],
      ['-s', '7M'],
      ['-s', '4M', '-l', '4M'],
    ]) {
      await assertSameMap(dir, ['--output=json', ...range, 'a.qed']);
      await assertSameMap(dir, [...range, 'a.qed']);
    }
  });

  it('prints the same map as qemu-img for a raw image whose length is not a sector multiple', async (t) => {
    const dir = await scratch(t);
    await writeRaw(join(dir, 'r.raw'), noise(100000, 9));
    await assertSameMap(dir, ['--output=json', 'r.raw']);
    await assertSameMap(dir, ['r.raw']);
  });

  it('exits 1 with one error line when an L2 entry cannot be followed, as qemu-img map does', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-o', 'cluster_size=4k', 'a.qed', '1M'], dir));
    await qemuWrite(dir, 'a.qed', ['write -P 1 0 8k']);
    const path = join(dir, 'a.qed');
    await patchU64(path, (await l2EntryFor(path, 4 * KiB)).entryOffset, 0x100000);
    const theirs = await qemuImg(['map', '--output=json', 'a.qed'], dir);
    const mine = await qed(['map', '--output=json', 'a.qed'], dir);
    assert.equal(theirs.code, 1);
    assert.equal(mine.code, 1);
    assert.match(mine.stderr, /^qed: map: a\.qed: [^\n]+\n$/);
  });
});
