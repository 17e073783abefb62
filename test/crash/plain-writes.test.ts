// Crash safety of images without a backing file: sequential and random writes, writes that
// allocate new L2 tables, many requests in flight, and a large-cluster geometry. Every crash
// state of every flush epoch is judged by the explorer (test/support/crash-explorer.ts).
import test from 'node:test';
import { isMainThread } from 'node:worker_threads';
import assert from 'node:assert/strict';
import { type GuestRecorder, type Random, type Workload, exploreInWorker, patternBytes, reportLine } from '../support/crash-explorer.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A sector-aligned write of 1..maxSectors sectors somewhere in the image. */
async function randomWrite(g: GuestRecorder, rng: Random, maxSectors: number, within = g.size): Promise<void> {
  const sectors = 1 + rng.int(maxSectors);
  const offset = rng.int((within - sectors * 512) / 512 + 1) * 512;
  await g.write(patternBytes(sectors * 512, rng.int(1 << 30)), offset);
}

const sequentialWrites: Workload = {
  name: 'sequential writes', clusterSize: 4 * KiB, tableSize: 2, size: 256 * KiB,
  async run(g, rng) {
    let offset = 0;
    for (let i = 0; i < 18; i++) {
      const length = [8 * KiB, 6 * KiB, 512, 4 * KiB][i % 4]!;
      await g.write(patternBytes(length, rng.int(1 << 30)), offset);
      offset += length;
      if (i % 3 === 2) await g.flush();
      if (i === 10) await g.quiesce();
    }
    await g.close();
  },
};

const randomWrites: Workload = {
  name: 'random writes', clusterSize: 4 * KiB, tableSize: 4, size: 512 * KiB,
  async run(g, rng) {
    for (let i = 0; i < 24; i++) {
      await randomWrite(g, rng, 16);
      if (rng.chance(0.25)) await g.flush();
      if (rng.chance(0.05)) await g.quiesce();
    }
    if (rng.chance(0.5)) await g.close();
  },
};

/** Writes scattered over many L2 tables' coverage, so most of them allocate a table (table_size 1: 2 MiB each). */
const newL2Tables: Workload = {
  name: 'new L2 tables', clusterSize: 4 * KiB, tableSize: 1, size: 12 * MiB,
  async run(g, rng) {
    for (let i = 0; i < 16; i++) {
      await g.write(...spreadOverTables(rng, 2 * MiB, 6));
      if (rng.chance(0.3)) await g.flush();
    }
    await g.flush();
  },
};

/** Data and offset of a write somewhere in one of `tables` L2 tables' coverage; one in four straddles two tables. */
function spreadOverTables(rng: Random, perTable: number, tables: number): [Uint8Array, number] {
  const sectors = 1 + rng.int(12);
  const table = rng.int(tables);
  const offset = rng.chance(0.25) && table > 0
    ? table * perTable - rng.int(sectors) * 512 - 512
    : table * perTable + rng.int(perTable / 512 - 16) * 512;
  return [patternBytes(sectors * 512, rng.int(1 << 30)), offset];
}

/** The same with table_size 2 (4 MiB per table), which QEMU can also open and check. */
const newL2TablesQemu: Workload = {
  ...newL2Tables, name: 'new L2 tables (table_size 2)', tableSize: 2, size: 16 * MiB,
  async run(g, rng) {
    for (let i = 0; i < 14; i++) {
      await g.write(...spreadOverTables(rng, 4 * MiB, 4));
      if (rng.chance(0.3)) await g.flush();
    }
    if (rng.chance(0.5)) await g.close();
  },
};

/** Several writes at once, some to the same clusters, sometimes with a flush among them. */
const manyInFlight: Workload = {
  name: 'requests in flight', clusterSize: 4 * KiB, tableSize: 2, size: 128 * KiB,
  async run(g, rng) {
    for (let round = 0; round < 4; round++) {
      const batch: Promise<void>[] = [];
      const cluster = rng.int(28);
      for (let k = 0; k < 4 + rng.int(4); k++) {
        if (rng.chance(0.5)) {
          // Same or neighbouring cluster: allocations race for one cluster lock.
          const offset = (cluster + rng.int(3)) * 4 * KiB + rng.int(8) * 512;
          batch.push(g.write(patternBytes(512 * (1 + rng.int(4)), rng.int(1 << 30)), Math.min(offset, g.size - 2048)));
        } else {
          batch.push(randomWrite(g, rng, 12));
        }
        if (rng.chance(0.15)) batch.push(g.flush());
      }
      await Promise.all(batch);
      if (rng.chance(0.6)) await g.flush();
    }
    await g.close();
  },
};

const largeClusters: Workload = {
  name: 'large clusters', clusterSize: 64 * KiB, tableSize: 1, size: 2 * MiB,
  async run(g, rng) {
    for (let i = 0; i < 8; i++) {
      await randomWrite(g, rng, 40);
      if (rng.chance(0.4)) await g.flush();
    }
    await g.close();
  },
};

/** Writes over the same few clusters again and again: torn in-place writes over older data. */
const overwrites: Workload = {
  name: 'overwrites in place', clusterSize: 4 * KiB, tableSize: 2, size: 32 * KiB,
  async run(g, rng) {
    for (let i = 0; i < 20; i++) {
      await randomWrite(g, rng, 16);
      if (rng.chance(0.35)) await g.flush();
    }
    if (rng.chance(0.5)) await g.close();
  },
};

/**
 * The smallest table cache (four 4 KiB chunks) with writes scattered over a 16 KiB L2 table:
 * dirty chunks overflow it, and the engine writes tables back under pressure in the middle
 * of requests, with no flush of its own.
 */
const cachePressure: Workload = {
  name: 'table writeback under cache pressure', clusterSize: 4 * KiB, tableSize: 4, size: 8 * MiB, cacheBytes: 16 * KiB,
  async run(g, rng) {
    for (let i = 0; i < 20; i++) {
      await randomWrite(g, rng, 8);
      if (rng.chance(0.15)) await g.flush();
    }
    if (rng.chance(0.5)) await g.close();
  },
};

/** Exported for the explorer's worker thread, which imports this file to find them. */
export const workloads = [sequentialWrites, randomWrites, overwrites, newL2Tables, newL2TablesQemu, manyInFlight, largeClusters, cachePressure];

if (isMainThread) {
  test('every crash state of writes without a backing file opens consistent and keeps flushed data', async () => {
    const result = await exploreInWorker([{ moduleUrl: import.meta.url, exportName: 'workloads' }], 'plain writes', 50_000);
    console.log(reportLine('plain writes', result));
    assert.deepEqual(result.violations.slice(0, 3), []);
    assert.ok(result.states - result.repairStates >= 50_000, `explored only ${result.states - result.repairStates} workload crash states`);
  });
}
