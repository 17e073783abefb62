// Us → QEMU: images that we create and write (through the library, and through `qed io -c`),
// with the same kind of seeded workload, pass `qemu-img check` with no errors and no leaks,
// `qemu-img compare` finds them identical to a raw file that received the same commands
// through qemu-io -f raw, and `qemu-io -r -c 'read -P ...'` finds the patterns in place.
//
// Unlike the QEMU-written images, these workloads do not avoid partial writes into zero
// clusters over a backing file: QEMU 7.2 resurrects backing data there, we must not.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import '../../src/io/node-default.js';
import { openDevice } from '../../src/ops/open.js';
import {
  BASE_SEED, KiB, MiB, Rng, applyToDevice, applyToModel, buildScenario, commandArgs, describeRun, ioCommand, layoutName,
  makeWorkload, qed, qemuImg, qemuIo, rawReferenceCommands, scratchDir, spotChecks, succeed,
  type BackingKind, type Layout, type Op, type Scenario, type Writer,
} from '../support/qemu.js';

// qemu-img check miscounts clusters once a file passes 4095 of them (qed_bytes_to_clusters
// divides by cluster_size - 1, NOTES §5) and reports leaks in a consistent image. Every file
// here stays below that, and the tests assert it so that a clean check means what it says.
const QEMU_CHECK_CLUSTER_LIMIT = 4095;

const SIZE_FOR_CLUSTER: Record<number, number> = { [4 * KiB]: 8 * MiB + 3 * 4 * KiB + 1536, [64 * KiB]: 3 * MiB + 2560, [MiB]: 6 * MiB + 3584 };
const BACKINGS: BackingKind[] = ['none', 'raw', 'short-raw', 'qed-over-raw'];

interface Case { layout: Layout; writer: Writer }
const cases: Case[] = [];
for (const clusterSize of [4 * KiB, 64 * KiB, MiB]) {
  for (const tableSize of [4, 16]) {
    for (const backing of BACKINGS) cases.push({ writer: 'library', layout: { clusterSize, tableSize, size: SIZE_FOR_CLUSTER[clusterSize]!, backing } });
  }
}
// `qed io` drives the same engine; it gets every cluster size and backing, and table_size 16
// with the smallest clusters (the most L2 entries per table), to keep node start-ups few.
for (const clusterSize of [4 * KiB, 64 * KiB, MiB]) {
  for (const tableSize of clusterSize === 4 * KiB ? [4, 16] : [4]) {
    for (const backing of BACKINGS) cases.push({ writer: 'cli', layout: { clusterSize, tableSize, size: SIZE_FOR_CLUSTER[clusterSize]!, backing } });
  }
}
// Writes to disjoint byte ranges issued together (sharing clusters, racing allocations) must
// land as if issued one by one.
for (const clusterSize of [4 * KiB, 64 * KiB]) {
  for (const backing of BACKINGS) cases.push({ writer: 'library-concurrent', layout: { clusterSize, tableSize: 4, size: SIZE_FOR_CLUSTER[clusterSize]!, backing } });
}

async function assertQemuCheckClean(dir: string, image: string, clusterSize: number): Promise<void> {
  const fileSize = (await stat(join(dir, image))).size;
  assert.ok(Math.ceil(fileSize / clusterSize) < QEMU_CHECK_CLUSTER_LIMIT, `${image} stays under QEMU's 4095-cluster check limit`);
  const result = await qemuImg(['check', '-f', 'qed', '--output=json', image], { cwd: dir });
  assert.equal(result.code, 0, describeRun(`qemu-img check ${image}`, result));
  const report = JSON.parse(result.stdout) as Record<string, unknown>;
  assert.equal(report['check-errors'], 0, `${image}: ${result.stdout}`);
  assert.equal(report.corruptions, undefined, `${image}: ${result.stdout}`);
  assert.equal(report.leaks, undefined, `${image}: ${result.stdout}`);
}

async function assertNeedCheckClear(path: string): Promise<void> {
  const header = await readFile(path);
  assert.equal(header[16]! & 0x2, 0, `${path}: NEED_CHECK is clear after a clean close`);
}

async function assertQemuAgrees(scenario: Scenario, clusterSize: number): Promise<void> {
  const { dir, top, mid, seed } = scenario;
  assert.ok(Buffer.from(scenario.model).equals(await readFile(scenario.reference)), `the qemu-io -f raw reference matches the model (seed ${seed})`);
  for (const image of [mid, top]) {
    if (image === undefined) continue;
    await assertNeedCheckClear(join(dir, image));
    await assertQemuCheckClean(dir, image, clusterSize);
  }
  const compared = await qemuImg(['compare', '-f', 'qed', '-F', 'raw', top, 'ref.raw'], { cwd: dir });
  assert.equal(compared.code, 0, describeRun(`qemu-img compare (seed ${seed})`, compared));
  assert.equal(compared.stdout, 'Images are identical.\n');

  const checks = spotChecks(scenario.model, scenario.topOps, 8);
  assert.ok(checks.length > 0, 'the workload left some pattern to spot-check');
  const read = await qemuIo(['-r', '-f', 'qed', ...commandArgs(checks), top], { cwd: dir });
  assert.equal(read.code, 0, describeRun(`qemu-io -r ${checks.join('; ')} (seed ${seed})`, read));
  assert.doesNotMatch(read.stdout, /Pattern verification failed/);
}

/**
 * Turns: qemu-io, then the library (or `qed io`), then qemu-io again on the same image, each
 * with a fresh workload also given to the reference. Our writes must fit into QEMU's layout
 * (its L2 tables, its file end) and QEMU must be able to carry on after us.
 */
async function alternateWriters(dir: string, scenario: Scenario, layout: Layout, ours: 'library' | 'cli'): Promise<void> {
  const rng = new Rng(scenario.seed ^ 0x9e3779b9);
  const shape = { size: layout.size, clusterSize: layout.clusterSize, tableSize: layout.tableSize, count: 30, hasBacking: layout.backing !== 'none' };
  const ourOps = makeWorkload(rng, { ...shape, avoidZeroClusterCow: false });
  // QEMU's last turn must not trip its own zero-cluster quirk (see makeWorkload); the zero
  // clusters already in the image are not known to the generator, so it writes whole clusters only.
  const qemuOps = makeWorkload(rng, { ...shape, avoidZeroClusterCow: true }).map((op) => wholeClusters(op, layout));
  if (ours === 'library') {
    const device = await openDevice(join(dir, scenario.top));
    try { for (const op of ourOps) await applyToDevice(device, op); } finally { await device.close(); }
  } else {
    await succeed('qed io', qed(['io', ...commandArgs(ourOps.map(ioCommand)), scenario.top], { cwd: dir }));
  }
  await succeed('qemu-io', qemuIo(['-f', 'qed', ...commandArgs(qemuOps.map(ioCommand)), scenario.top], { cwd: dir }));
  const all = [...ourOps, ...qemuOps];
  await succeed('qemu-io -f raw', qemuIo(['-f', 'raw', ...commandArgs(rawReferenceCommands(all)), 'ref.raw'], { cwd: dir }));
  for (const op of all) applyToModel(scenario.model, op);
  scenario.topOps.push(...all);
}

/** Widen an op to whole clusters (clamped to the image end). */
function wholeClusters(op: Op, layout: Layout): Op {
  const cs = layout.clusterSize;
  const offset = op.offset - (op.offset % cs);
  const end = Math.min(layout.size, Math.ceil((op.offset + op.length) / cs) * cs);
  return { ...op, offset, length: end - offset };
}

describe('images QEMU and we take turns writing stay clean and identical to the reference', () => {
  for (const ours of ['library', 'cli'] as const) {
    for (const clusterSize of [4 * KiB, 64 * KiB]) {
      for (const backing of ['none', 'raw', 'qed-over-raw'] as BackingKind[]) {
        const layout: Layout = { clusterSize, tableSize: 4, size: SIZE_FOR_CLUSTER[clusterSize]!, backing };
        const name = `we-write-qemu-checks: turns with the ${ours}: ${layoutName(layout)}`;
        test(`qemu-io, then the ${ours}, then qemu-io again: ${layoutName(layout)}`, async (t) => {
          const dir = await scratchDir(t);
          const scenario = await buildScenario(dir, layout, 'qemu', name);
          t.diagnostic(`seed ${scenario.seed}`);
          await alternateWriters(dir, scenario, layout, ours);
          await assertQemuAgrees(scenario, clusterSize);
        });
      }
    }
  }
});

describe(`images we write pass qemu-img check and compare (base seed ${BASE_SEED})`, () => {
  for (const { layout, writer } of cases) {
    const name = `we-write-qemu-checks: ${writer}: ${layoutName(layout)}`;
    test(`written by the ${writer}, QEMU finds it clean and identical to the raw reference: ${layoutName(layout)}`, async (t) => {
      const dir = await scratchDir(t);
      const scenario = await buildScenario(dir, layout, writer, name);
      t.diagnostic(`seed ${scenario.seed} (${scenario.midOps.length + scenario.topOps.length} ops)`);
      await assertQemuAgrees(scenario, layout.clusterSize);
    });
  }
});
