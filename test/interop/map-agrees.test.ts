// `qed map --output=json` prints what `qemu-img map --output=json` prints for the same image:
// the same runs with the same depth, present/zero/data flags and host offsets, merged the
// same way. Images are written by qemu-io; raw backing files are fully written here (sparse
// raw files are compared in sparse-raw.test.ts).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  BASE_SEED, KiB, MiB, Rng, buildScenario, commandArgs, describeRun, layoutName, qed, qemuImg, qemuIo, scratchDir,
  succeed, writeRawFile, type BackingKind, type Layout,
} from '../support/qemu.js';

async function assertSameMap(dir: string, args: string[]): Promise<void> {
  const theirs = await qemuImg(['map', ...args], { cwd: dir });
  const ours = await qed(['map', ...args], { cwd: dir });
  assert.equal(theirs.code, 0, describeRun('qemu-img map', theirs));
  assert.equal(ours.code, 0, describeRun('qed map', ours));
  if (args.includes('--output=json')) assert.deepEqual(JSON.parse(ours.stdout), JSON.parse(theirs.stdout));
  assert.equal(ours.stdout, theirs.stdout);
}

const SIZE_FOR_CLUSTER: Record<number, number> = { [4 * KiB]: 8 * MiB + 3 * 4 * KiB + 1536, [64 * KiB]: 3 * MiB + 2560, [MiB]: 6 * MiB + 3584 };
const BACKINGS: BackingKind[] = ['none', 'raw', 'short-raw', 'qed-over-raw'];

const matrix: Layout[] = [];
for (const clusterSize of [4 * KiB, 64 * KiB, MiB]) {
  for (const tableSize of [4, 16]) {
    for (const backing of BACKINGS) {
      const size = SIZE_FOR_CLUSTER[clusterSize]!;
      // A shorter bottom file that is a sector multiple, so that no byte of it is padding.
      matrix.push({ clusterSize, tableSize, size, backing, shortLength: Math.floor(size * 0.4 / 512) * 512 });
    }
  }
}

describe(`qed map --output=json agrees with qemu-img map on qemu-io-written images (base seed ${BASE_SEED})`, () => {
  for (const layout of matrix) {
    const name = `map-agrees: ${layoutName(layout)}`;
    test(`same runs, depths, flags and offsets: ${layoutName(layout)}`, async (t) => {
      const dir = await scratchDir(t);
      const scenario = await buildScenario(dir, layout, 'qemu', name, false);
      t.diagnostic(`seed ${scenario.seed}`);
      await assertSameMap(dir, ['--output=json', scenario.top]);
    });
  }

  // Our own images map alike too: zero clusters at the image's short last cluster, zero writes
  // that skip clusters already reading zeros, allocation order of our engine.
  for (const layout of matrix.filter((l) => l.tableSize === 4 && l.clusterSize < MiB)) {
    const name = `map-agrees (library): ${layoutName(layout)}`;
    test(`same runs on an image the library wrote: ${layoutName(layout)}`, async (t) => {
      const dir = await scratchDir(t);
      const scenario = await buildScenario(dir, layout, 'library', name, false);
      t.diagnostic(`seed ${scenario.seed}`);
      await assertSameMap(dir, ['--output=json', scenario.top]);
    });
  }

  test('same runs for data, zero and unaligned zero writes on a plain image (NOTES §3 example)', async (t) => {
    const dir = await scratchDir(t);
    await succeed('create', qemuImg(['create', '-q', '-f', 'qed', 'a.qed', '1M'], { cwd: dir }));
    const commands = ['write 0 64k', 'write 64k 64k', 'write 256k 4k', 'write -z 512k 128k', 'write -z 768k 1000'];
    await succeed('qemu-io', qemuIo(['-f', 'qed', ...commandArgs(commands), 'a.qed'], { cwd: dir }));
    await assertSameMap(dir, ['--output=json', 'a.qed']);
    await assertSameMap(dir, ['a.qed']);
  });

  test('same clipped runs with --start-offset and --max-length', async (t) => {
    const dir = await scratchDir(t);
    await succeed('create', qemuImg(['create', '-q', '-f', 'qed', 'a.qed', '1M'], { cwd: dir }));
    await succeed('qemu-io', qemuIo(['-f', 'qed', ...commandArgs(['write 0 64k', 'write -z 128k 64k', 'write 320k 4k']), 'a.qed'], { cwd: dir }));
    await assertSameMap(dir, ['--output=json', '--start-offset', '65536', '--max-length', '307200', 'a.qed']);
    await assertSameMap(dir, ['--output=json', '-s', '4096', '-l', '1000000', 'a.qed']);
  });

  test('same runs and human output for a chain of QED over QED over a shorter raw file', async (t) => {
    const dir = await scratchDir(t);
    await writeRawFile(join(dir, 'base.raw'), new Rng(3).bytes(100352));
    await succeed('mid', qemuImg(['create', '-q', '-f', 'qed', '-b', 'base.raw', '-F', 'raw', 'mid.qed', '1M'], { cwd: dir }));
    await succeed('top', qemuImg(['create', '-q', '-f', 'qed', '-b', 'mid.qed', '-F', 'qed', 'top.qed'], { cwd: dir }));
    await succeed('qemu-io mid', qemuIo(['-f', 'qed', ...commandArgs(['write -P 1 64k 4k', 'write -z 256k 64k']), 'mid.qed'], { cwd: dir }));
    await succeed('qemu-io top', qemuIo(['-f', 'qed', ...commandArgs(['write -P 2 512k 100k', 'write -z 0 64k']), 'top.qed'], { cwd: dir }));
    await assertSameMap(dir, ['--output=json', 'top.qed']);
    await assertSameMap(dir, ['top.qed']);
    await assertSameMap(dir, ['--output=json', 'mid.qed']);
  });

  test('same runs for a fully written raw image', async (t) => {
    const dir = await scratchDir(t);
    await writeRawFile(join(dir, 'disk.raw'), new Rng(4).bytes(3 * MiB));
    await assertSameMap(dir, ['--output=json', 'disk.raw']);
  });

  test('same runs over a raw backing file whose length is not a sector multiple', async (t) => {
    // QEMU pads the raw file to 100352 bytes and reports the 352 bytes past its end as zero
    // (with an offset), not as data.
    const dir = await scratchDir(t);
    await writeRawFile(join(dir, 'odd.raw'), new Rng(5).bytes(100000));
    await succeed('create', qemuImg(['create', '-q', '-f', 'qed', '-b', 'odd.raw', '-F', 'raw', 'top.qed', '1M'], { cwd: dir }));
    await assertSameMap(dir, ['--output=json', 'top.qed']);
    await assertSameMap(dir, ['top.qed']);
  });

  test('same runs for a raw image whose length is not a sector multiple', async (t) => {
    const dir = await scratchDir(t);
    await writeRawFile(join(dir, 'odd.raw'), new Rng(6).bytes(100000));
    await assertSameMap(dir, ['--output=json', 'odd.raw']);
  });
});
