// table_size 1 is legal in the spec and `qemu-img create` makes such images, but QEMU 7.2
// cannot open them: qed_check_table_offset rejects every table whose first and last cluster
// coincide ("QED table offset is invalid", NOTES §6). We create the same file, open it, write
// it, read it back byte for byte against a raw reference written by qemu-io -f raw, and our
// checker finds it clean: the "we do better" proof.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import '../../src/io/node-default.js';
import { NodeFile } from '../../src/io/node-file.js';
import { checkImage } from '../../src/check/check.js';
import { openDevice } from '../../src/ops/open.js';
import { readHeader } from '../../src/engine/open.js';
import {
  BASE_SEED, KiB, MiB, buildScenario, commandArgs, describeRun, layoutName, qed, qemuImg, qemuIo, scratchDir, spotChecks,
  firstDifference, succeed, type Layout, type Writer,
} from '../support/qemu.js';

const CLUSTER_SIZES = [4 * KiB, 64 * KiB, MiB];

describe('table_size 1: QEMU creates what it cannot open', () => {
  for (const clusterSize of CLUSTER_SIZES) {
    test(`qemu-io and qemu-img info refuse a ${clusterSize / KiB} KiB table_size 1 image with "QED table offset is invalid"`, async (t) => {
      const dir = await scratchDir(t);
      await succeed('qemu-img create', qemuImg(['create', '-q', '-f', 'qed', '-o', `cluster_size=${clusterSize},table_size=1`, 'one.qed', '64M'], { cwd: dir }));
      const io = await qemuIo(['-f', 'qed', '-c', 'read 0 4k', 'one.qed'], { cwd: dir });
      assert.equal(io.code, 1, describeRun('qemu-io', io));
      assert.match(io.stderr, /can't open device one\.qed: QED table offset is invalid/);
      const info = await qemuImg(['info', 'one.qed'], { cwd: dir });
      assert.equal(info.code, 1, describeRun('qemu-img info', info));
      assert.match(info.stderr, /Could not open 'one\.qed': QED table offset is invalid/);
    });

    test(`qed create writes the same ${clusterSize / KiB} KiB table_size 1 file as qemu-img, and qed info opens it`, async (t) => {
      const dir = await scratchDir(t);
      const options = ['-o', `cluster_size=${clusterSize},table_size=1`];
      const theirs = await succeed('qemu-img create', qemuImg(['create', '-f', 'qed', ...options, 'qemu.qed', '64M'], { cwd: dir }));
      const ours = await succeed('qed create', qed(['create', '-f', 'qed', ...options, 'ours.qed', '64M'], { cwd: dir }));
      assert.equal(ours.stdout, theirs.stdout.replace("'qemu.qed'", "'ours.qed'"));
      assert.ok((await readFile(join(dir, 'ours.qed'))).equals(await readFile(join(dir, 'qemu.qed'))), 'identical files');
      const info = await succeed('qed info', qed(['info', '--output=json', 'qemu.qed'], { cwd: dir }));
      const parsed = JSON.parse(info.stdout) as Record<string, unknown>;
      assert.equal(parsed['cluster-size'], clusterSize);
      assert.equal(parsed['virtual-size'], 64 * MiB);
      assert.equal(parsed.format, 'qed');
    });
  }
});

/** With 4 KiB clusters and table_size 1 an L2 table covers 2 MiB: the image spans five of them. */
const SIZE_FOR_CLUSTER: Record<number, number> = { [4 * KiB]: 9 * MiB + 4 * KiB + 2560, [64 * KiB]: 3 * MiB + 2560, [MiB]: 6 * MiB + 3584 };
const layouts: Layout[] = [
  { clusterSize: 4 * KiB, tableSize: 1, size: SIZE_FOR_CLUSTER[4 * KiB]!, backing: 'none' },
  { clusterSize: 4 * KiB, tableSize: 1, size: SIZE_FOR_CLUSTER[4 * KiB]!, backing: 'short-raw' },
  { clusterSize: 4 * KiB, tableSize: 1, size: SIZE_FOR_CLUSTER[4 * KiB]!, backing: 'qed-over-raw' },
  { clusterSize: 64 * KiB, tableSize: 1, size: SIZE_FOR_CLUSTER[64 * KiB]!, backing: 'none' },
  { clusterSize: 64 * KiB, tableSize: 1, size: SIZE_FOR_CLUSTER[64 * KiB]!, backing: 'raw' },
  { clusterSize: MiB, tableSize: 1, size: SIZE_FOR_CLUSTER[MiB]!, backing: 'none' },
  { clusterSize: MiB, tableSize: 1, size: SIZE_FOR_CLUSTER[MiB]!, backing: 'qed-over-raw' },
];

async function assertOurCheckClean(path: string): Promise<void> {
  const file = await NodeFile.open(path, 'read-only');
  try {
    const { header } = await readHeader(file);
    const result = await checkImage(file, header);
    assert.deepEqual(
      { checkErrors: result.checkErrors, corruptions: result.corruptions, leaks: result.leaks, problems: result.problems },
      { checkErrors: 0, corruptions: 0, leaks: 0, problems: [] },
      path,
    );
    assert.ok(result.allocatedClusters > 0, `${path}: the workload allocated clusters`);
  } finally {
    await file.close();
  }
}

describe(`table_size 1: we create, write, read and check what QEMU cannot open (base seed ${BASE_SEED})`, () => {
  for (const writer of ['library', 'cli'] as Writer[]) {
    for (const layout of layouts) {
      const name = `table-size-one: ${writer}: ${layoutName(layout)}`;
      test(`written by the ${writer}, reads back as the raw reference and checks clean: ${layoutName(layout)}`, async (t) => {
        const dir = await scratchDir(t);
        const scenario = await buildScenario(dir, layout, writer, name);
        t.diagnostic(`seed ${scenario.seed}`);
        for (const image of [scenario.mid, scenario.top]) {
          if (image !== undefined) await assertOurCheckClean(join(dir, image));
        }
        const device = await openDevice(join(dir, scenario.top), { readOnly: true });
        try {
          assert.equal(await firstDifference(device, scenario.reference), null, `against the qemu-io -f raw reference, seed ${scenario.seed}`);
        } finally {
          await device.close();
        }
        const checks = spotChecks(scenario.model, scenario.topOps, 8);
        const read = await qed(['io', '-r', ...commandArgs(checks), scenario.top], { cwd: dir });
        assert.equal(read.code, 0, describeRun('qed io -r read -P', read));
        assert.doesNotMatch(read.stdout, /Pattern verification failed/);
        const refused = await qemuIo(['-r', '-f', 'qed', '-c', 'read 0 512', scenario.top], { cwd: dir });
        assert.match(refused.stderr, /QED table offset is invalid/, 'QEMU still cannot open it');
      });
    }
  }
});
