// Crash safety where old content is not zeros: partial-cluster writes over raw and QED backing
// files (copy-on-write, invariant [I2]), zero writes aligned and unaligned (over backing data,
// allocated data and zero clusters), discards, and growing the image. Judged state by state
// by the explorer (test/support/crash-explorer.ts).
import test from 'node:test';
import { isMainThread } from 'node:worker_threads';
import assert from 'node:assert/strict';
import { type GuestRecorder, type Random, type Workload, exploreInWorker, patternBytes, reportLine } from '../support/crash-explorer.js';

const KiB = 1024;
const SECTOR = 512;

/**
 * A sector-aligned range shaped to hit copy-on-write's cases: inside one cluster, from the
 * middle of one cluster into the next ones, or whole clusters.
 */
function clusterShapedRange(rng: Random, clusterSize: number, size: number): { offset: number; length: number } {
  const perCluster = clusterSize / SECTOR;
  const clusters = size / clusterSize;
  const shape = rng.int(3);
  if (shape === 0) {
    const cluster = rng.int(clusters);
    const first = rng.int(perCluster);
    return { offset: cluster * clusterSize + first * SECTOR, length: (1 + rng.int(perCluster - first)) * SECTOR };
  }
  if (shape === 1) {
    const cluster = rng.int(clusters - 3);
    const offset = cluster * clusterSize + (1 + rng.int(perCluster - 1)) * SECTOR;
    return { offset, length: (1 + rng.int(3 * perCluster - 1)) * SECTOR };
  }
  const count = 1 + rng.int(2);
  return { offset: rng.int(clusters - count + 1) * clusterSize, length: count * clusterSize };
}

async function cowWrite(g: GuestRecorder, rng: Random, clusterSize: number): Promise<void> {
  const { offset, length } = clusterShapedRange(rng, clusterSize, g.size);
  await g.write(patternBytes(length, rng.int(1 << 30)), offset);
}

function cowOver(format: 'raw' | 'qed', clusterSize: number, backingSize: number): Workload {
  return {
    name: `partial writes over a ${format} backing file (${clusterSize / KiB} KiB clusters)`,
    clusterSize, tableSize: 2, size: 256 * KiB, backing: { format, size: backingSize },
    async run(g, rng) {
      for (let i = 0; i < 16; i++) {
        await cowWrite(g, rng, clusterSize);
        if (rng.chance(0.3)) await g.flush();
        if (rng.chance(0.05)) await g.quiesce();
      }
      if (rng.chance(0.5)) await g.close();
    },
  };
}

/** Writes, aligned and unaligned zero writes and discards, mixed over the same few clusters. */
function zeroesAndDiscards(backing: boolean): Workload {
  return {
    name: `zero writes and discards ${backing ? 'over a raw backing file' : 'without a backing file'}`,
    clusterSize: 4 * KiB, tableSize: backing ? 2 : 1, size: 128 * KiB,
    backing: backing ? { format: 'raw', size: 128 * KiB } : undefined,
    async run(g, rng) {
      for (let i = 0; i < 18; i++) {
        const { offset, length } = clusterShapedRange(rng, 4 * KiB, g.size);
        const kind = rng.int(4);
        if (kind === 0) await g.write(patternBytes(length, rng.int(1 << 30)), offset);
        else if (kind === 1) await g.writeZeroes(offset, length);
        else if (kind === 2) {
          const start = Math.floor(offset / 4096) * 4096;
          await g.writeZeroes(start, Math.min(4096 * (1 + rng.int(3)), g.size - start));
        }
        else await g.discard(offset, length);
        if (rng.chance(0.3)) await g.flush();
      }
      if (rng.chance(0.5)) await g.close();
    },
  };
}

/**
 * Write, grow, write into the new space. The backing file (if any) is `backingSize` long: past
 * the old end, a longer one must not show through (the grown range reads zeros).
 */
function growing(backingSize: number | null): Workload {
  const initial = 128 * KiB;
  return {
    name: `resize (grow) ${backingSize === null ? 'without a backing file' : `over a ${backingSize / KiB} KiB raw backing file`}`,
    clusterSize: 4 * KiB, tableSize: 2, size: initial, maxSize: 384 * KiB,
    backing: backingSize === null ? undefined : { format: 'raw', size: backingSize },
    async run(g, rng) {
      for (const size of [256 * KiB, 384 * KiB]) {
        for (let i = 0; i < 3; i++) await cowWrite(g, rng, 4 * KiB);
        if (rng.chance(0.5)) await g.flush();
        await g.resize(size);
        const offset = size - 64 * KiB + rng.int(100) * SECTOR;
        await g.write(patternBytes(6 * KiB, rng.int(1 << 30)), offset);
        if (rng.chance(0.7)) await g.flush();
      }
      await g.close();
    },
  };
}

/** Concurrent partial writes into the same clusters over a backing file. */
const cowInFlight: Workload = {
  name: 'concurrent partial writes over a raw backing file',
  clusterSize: 4 * KiB, tableSize: 2, size: 128 * KiB, backing: { format: 'raw', size: 128 * KiB },
  async run(g, rng) {
    for (let round = 0; round < 4; round++) {
      const cluster = rng.int(28);
      const batch: Promise<void>[] = [];
      for (let k = 0; k < 3 + rng.int(4); k++) {
        const offset = (cluster + rng.int(3)) * 4 * KiB + rng.int(8) * SECTOR;
        const length = Math.min(SECTOR * (1 + rng.int(10)), g.size - offset);
        batch.push(rng.chance(0.25) ? g.writeZeroes(offset, length) : g.write(patternBytes(length, rng.int(1 << 30)), offset));
        if (rng.chance(0.1)) batch.push(g.flush());
      }
      await Promise.all(batch);
      if (rng.chance(0.6)) await g.flush();
    }
    if (rng.chance(0.5)) await g.close();
  },
};

/** Exported for the explorer's worker thread, which imports this file to find them. */
export const workloads = [
  cowOver('raw', 4 * KiB, 256 * KiB), cowOver('qed', 8 * KiB, 192 * KiB), zeroesAndDiscards(true),
  zeroesAndDiscards(false), growing(null), growing(128 * KiB), growing(320 * KiB), cowInFlight,
];

if (isMainThread) {
  test('every crash state of writes over old content (backing files, zero writes, discards, growth) keeps flushed data and never shows a third value', async () => {
    const result = await exploreInWorker([{ moduleUrl: import.meta.url, exportName: 'workloads' }], 'backing files, zeroes, resize', 50_000);
    console.log(reportLine('backing files, zeroes, resize', result));
    assert.deepEqual(result.violations.slice(0, 3), []);
    assert.ok(result.states - result.repairStates >= 50_000, `explored only ${result.states - result.repairStates} workload crash states`);
  });
}
