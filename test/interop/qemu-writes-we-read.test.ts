// QEMU → us: images that qemu-io wrote (seeded random writes, aligned and unaligned zero
// writes, discards) read byte for byte through our library as a raw file that received the
// same commands (qemu-io -f raw), and as `qemu-img convert -O raw` of the image.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import '../../src/io/node-default.js';
import { openDevice } from '../../src/ops/open.js';
import {
  BASE_SEED, KiB, MiB, Rng, buildScenario, commandArgs, firstDifference, layoutName, qemuImg, qemuIo, scratchDir,
  succeed, writeRawFile, type BackingKind, type Layout,
} from '../support/qemu.js';

/** Sizes that are not a cluster multiple; with 4 KiB clusters and table_size 4 (8 MiB per L2 table) the image spans two L2 tables. */
const SIZE_FOR_CLUSTER: Record<number, number> = { [4 * KiB]: 8 * MiB + 3 * 4 * KiB + 1536, [64 * KiB]: 3 * MiB + 2560, [MiB]: 6 * MiB + 3584 };
const BACKINGS: BackingKind[] = ['none', 'raw', 'short-raw', 'qed-over-raw'];

const matrix: Layout[] = [];
for (const clusterSize of [4 * KiB, 64 * KiB, MiB]) {
  for (const tableSize of [4, 16]) {
    for (const backing of BACKINGS) matrix.push({ clusterSize, tableSize, size: SIZE_FOR_CLUSTER[clusterSize]!, backing });
  }
}

describe(`images written by qemu-io read identically through the library (base seed ${BASE_SEED})`, () => {
  for (const layout of matrix) {
    const name = `qemu-writes-we-read: ${layoutName(layout)}`;
    test(`every byte matches the raw reference and qemu-img convert: ${layoutName(layout)}`, async (t) => {
      const dir = await scratchDir(t);
      const scenario = await buildScenario(dir, layout, 'qemu', name);
      t.diagnostic(`seed ${scenario.seed} (${scenario.midOps.length + scenario.topOps.length} ops)`);
      const converted = join(dir, 'converted.raw');
      await succeed('qemu-img convert', qemuImg(['convert', '-O', 'raw', scenario.top, 'converted.raw'], { cwd: dir }));

      const device = await openDevice(join(dir, scenario.top), { readOnly: true });
      try {
        assert.equal(device.size, layout.size);
        assert.equal(await firstDifference(device, scenario.reference), null, `against the qemu-io -f raw reference, seed ${scenario.seed}`);
        assert.equal(await firstDifference(device, converted), null, `against qemu-img convert -O raw, seed ${scenario.seed}`);
      } finally {
        await device.close();
      }
    });
  }

  // 64 KiB clusters and table_size 4 give 512 MiB per L2 table: this image has two, and the
  // workload gathers around their boundary.
  const crossing: Layout = { clusterSize: 64 * KiB, tableSize: 4, size: 512 * MiB + 3 * 64 * KiB + 2560, backing: 'none' };
  test(`every byte matches across an L2 table boundary: ${layoutName(crossing)}`, async (t) => {
    const dir = await scratchDir(t);
    const scenario = await buildScenario(dir, crossing, 'qemu', `qemu-writes-we-read: ${layoutName(crossing)}`);
    t.diagnostic(`seed ${scenario.seed}`);
    const device = await openDevice(join(dir, scenario.top), { readOnly: true });
    try {
      assert.equal(await firstDifference(device, scenario.reference), null, `against the qemu-io -f raw reference, seed ${scenario.seed}`);
    } finally {
      await device.close();
    }
  });

  test('an image in a subdirectory over ../base.raw reads through its relative backing name', async (t) => {
    const dir = await scratchDir(t);
    await mkdir(join(dir, 'sub'));
    await writeRawFile(join(dir, 'base.raw'), new Rng(21).bytes(MiB));
    await succeed('create', qemuImg(['create', '-q', '-f', 'qed', '-b', '../base.raw', '-F', 'raw', 'sub/top.qed', '2M'], { cwd: dir }));
    await succeed('qemu-io', qemuIo(['-f', 'qed', ...commandArgs(['write -P 9 100k 200k', 'write -z 512k 64k']), 'sub/top.qed'], { cwd: dir }));
    await succeed('qemu-img convert', qemuImg(['convert', '-O', 'raw', 'sub/top.qed', 'converted.raw'], { cwd: dir }));
    const device = await openDevice(join(dir, 'sub', 'top.qed'), { readOnly: true });
    try {
      assert.equal(await firstDifference(device, join(dir, 'converted.raw')), null);
    } finally {
      await device.close();
    }
  });

  test('a zero cluster rewritten in part reads as QEMU left it, backing data copied around the write', async (t) => {
    // QEMU 7.2 fills the rest of the new cluster from the backing file, not with zeros
    // (NOTES §4). Whatever QEMU wrote, we must read the same bytes QEMU reads.
    const dir = await scratchDir(t);
    await writeRawFile(join(dir, 'base.raw'), new Uint8Array(256 * KiB).fill(0xaa));
    await succeed('create', qemuImg(['create', '-q', '-f', 'qed', '-b', 'base.raw', '-F', 'raw', 'top.qed', '1M'], { cwd: dir }));
    await succeed('qemu-io', qemuIo(['-f', 'qed', ...commandArgs(['write -z 0 64k', 'write -P 5 0 4k']), 'top.qed'], { cwd: dir }));
    await succeed('qemu-img convert', qemuImg(['convert', '-O', 'raw', 'top.qed', 'converted.raw'], { cwd: dir }));
    const device = await openDevice(join(dir, 'top.qed'), { readOnly: true });
    try {
      assert.equal(await firstDifference(device, join(dir, 'converted.raw')), null);
      const tail = new Uint8Array(60 * KiB);
      await device.read(tail, 4 * KiB);
      assert.ok(tail.every((b) => b === 0xaa), 'bytes 4k..64k come from the backing file, as QEMU wrote them');
    } finally {
      await device.close();
    }
  });
});
