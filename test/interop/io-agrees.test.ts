// `qed io` behaves as qemu-io where the project promises it: the same lines for the same
// commands (timings aside), "Pattern verification failed at offset X, N bytes" and exit 1 on
// a `read -P` mismatch, and a failing command does not stop the ones after it. Each tool runs
// on its own copy of one QEMU-written image; afterwards the copies must hold the same bytes.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  Rng, commandArgs, describeRun, qed, qemuImg, qemuIo, scratchDir, succeed, withoutTimings, writeRawFile, type RunResult,
} from '../support/qemu.js';

interface Pair { dir: string; theirs: RunResult; ours: RunResult }

/** A 1 MiB image with data, zero and unallocated clusters, over a raw file when asked. */
async function makeImage(dir: string, withBacking: boolean): Promise<void> {
  const backing = withBacking ? ['-b', 'base.raw', '-F', 'raw'] : [];
  if (withBacking) await writeRawFile(join(dir, 'base.raw'), new Rng(11).bytes(512 * 1024));
  await succeed('create', qemuImg(['create', '-q', '-f', 'qed', ...backing, 'image.qed', '1M'], { cwd: dir }));
  const commands = ['write -P 0xab 0 64k', 'write -z 128k 64k', 'write -P 0x5a 300k 5000'];
  await succeed('qemu-io', qemuIo(['-f', 'qed', ...commandArgs(commands), 'image.qed'], { cwd: dir }));
  await copyFile(join(dir, 'image.qed'), join(dir, 'qemu.qed'));
  await copyFile(join(dir, 'image.qed'), join(dir, 'ours.qed'));
}

async function runBoth(t: { after(fn: () => Promise<void>): void }, commands: string[], options: { readOnly?: boolean; withBacking?: boolean } = {}): Promise<Pair> {
  const dir = await scratchDir(t);
  await makeImage(dir, options.withBacking ?? false);
  const ro = options.readOnly ? ['-r'] : [];
  const theirs = await qemuIo([...ro, '-f', 'qed', ...commandArgs(commands), 'qemu.qed'], { cwd: dir });
  const ours = await qed(['io', ...ro, '-f', 'qed', ...commandArgs(commands), 'ours.qed'], { cwd: dir });
  return { dir, theirs, ours };
}

async function assertSameContent(dir: string): Promise<void> {
  const compared = await qemuImg(['compare', '-f', 'qed', '-F', 'qed', 'qemu.qed', 'ours.qed'], { cwd: dir });
  assert.equal(compared.code, 0, describeRun('qemu-img compare qemu.qed ours.qed', compared));
}

describe('qed io matches qemu-io', () => {
  test('the same commands print the same lines and leave the same bytes', async (t) => {
    const commands = [
      'read 0 4k', 'read -P 0xab 4k 60k', 'read -P 0 128k 64k', 'read -v 299k 2000', 'read 1000 1',
      'write -P 0x11 64k 4k', 'write 70000 3000', 'write -z 192k 64k', 'write -z -u 512k 128k', 'discard 0 64k',
      'read -P 0xab 0 64k', 'flush', 'length', 'truncate 2M', 'length', 'write -P 0x22 1536k 512k', 'read -q -P 0x22 1536k 4k',
    ];
    const { dir, theirs, ours } = await runBoth(t, commands);
    assert.equal(theirs.code, 0, describeRun('qemu-io', theirs));
    assert.equal(ours.code, 0, describeRun('qed io', ours));
    assert.equal(withoutTimings(ours.stdout), withoutTimings(theirs.stdout));
    await assertSameContent(dir);
  });

  test('the same lines for reads over a backing file, read-only', async (t) => {
    const commands = ['read -v 60k 8k', 'read -P 0 128k 64k', 'read -P 0x5a 300k 5000', 'read 500k 24k', 'read 600k 4k', 'map', 'length'];
    const { theirs, ours } = await runBoth(t, commands, { readOnly: true, withBacking: true });
    assert.equal(theirs.code, 0, describeRun('qemu-io', theirs));
    assert.equal(ours.code, 0, describeRun('qed io', ours));
    assert.equal(withoutTimings(ours.stdout), withoutTimings(theirs.stdout));
  });

  test('read -v prints the same hexdump, whose text column shows letters and digits only', async (t) => {
    const { theirs, ours } = await runBoth(t, ['write -P 0x41 0 16', 'write -P 0x7e 16 16', 'write -P 0x20 32 8', 'read -v 0 40'], {});
    assert.match(theirs.stdout, /^00000000: {2}(41 ){16} AAAAAAAAAAAAAAAA\n00000010: {2}(7e ){16} \.{16}\n00000020: {2}(20 ){8} \.{8}\n/m);
    assert.equal(withoutTimings(ours.stdout), withoutTimings(theirs.stdout));
  });

  test('sizes that are not a whole number of units print with three decimals', async (t) => {
    // 1000000 bytes = 976.5625 KiB: C's printf rounds the exact tie to even (976.562).
    const { theirs, ours } = await runBoth(t, ['read 0 1025', 'read 0 1536', 'read 0 5000', 'read 0 1000', 'read 0 1000000', 'read 0 1M'], { readOnly: true });
    const sizes = (out: string): string[] => [...out.matchAll(/^(.*), 1 ops;/gm)].map((m) => m[1]!);
    assert.deepEqual(sizes(theirs.stdout), ['1.001 KiB', '1.500 KiB', '4.883 KiB', '1000 bytes', '976.562 KiB', '1 MiB']);
    assert.deepEqual(sizes(ours.stdout), sizes(theirs.stdout));
  });

  test('map prints the same allocation runs for the same image', async (t) => {
    const { theirs, ours } = await runBoth(t, ['map'], { readOnly: true });
    assert.equal(theirs.code, 0, describeRun('qemu-io', theirs));
    assert.equal(ours.stdout, theirs.stdout);
  });

  test('read -P mismatch prints "Pattern verification failed at offset X, N bytes" before the read lines and exits 1', async (t) => {
    const { theirs, ours } = await runBoth(t, ['read -P 0x11 2048 4096'], { readOnly: true });
    for (const [who, result] of [['qemu-io', theirs], ['qed io', ours]] as const) {
      assert.equal(result.code, 1, describeRun(who, result));
      assert.match(result.stdout, /^Pattern verification failed at offset 2048, 4096 bytes\nread 4096\/4096 bytes at offset 2048\n4 KiB, 1 ops; /, who);
    }
    assert.equal(withoutTimings(ours.stdout), withoutTimings(theirs.stdout));
  });

  const FAILURES: Array<[string, string]> = [
    ['a read -P mismatch', 'read -P 0x22 0 4k'],
    ['a read past the end of the image', 'read 1020k 8k'],
    ['a write past the end of the image', 'write -P 0x22 1M 4k'],
    ['an unknown command', 'bogus 0 4k'],
    ['a command with too few arguments', 'read 0'],
  ];
  for (const [what, failing] of FAILURES) {
    test(`after ${what}, the later commands still run and the exit code is 1`, async (t) => {
      const commands = ['write -P 0x33 8k 4k', failing, 'write -P 0x44 16k 4k', 'read -P 0x44 16k 4k'];
      const { dir, theirs, ours } = await runBoth(t, commands);
      for (const [who, result] of [['qemu-io', theirs], ['qed io', ours]] as const) {
        assert.equal(result.code, 1, describeRun(who, result));
        assert.match(result.stdout, /wrote 4096\/4096 bytes at offset 16384\n[^\n]*\nread 4096\/4096 bytes at offset 16384\n/, `${who} ran the commands after the failure`);
        assert.doesNotMatch(result.stdout, /Pattern verification failed at offset 16384/, who);
      }
      await assertSameContent(dir);
      const check = await qemuIo(['-r', '-f', 'qed', '-c', 'read -P 0x33 8k 4k', '-c', 'read -P 0x44 16k 4k', 'ours.qed'], { cwd: dir });
      assert.equal(check.code, 0, describeRun('qemu-io -r on our image', check));
    });
  }
});
