// Workloads of the request lifecycle for the crash explorer (test/crash/close-in-flight.test.ts,
// and broken on purpose in test/crash/broken-engine.test.ts): close() called while writes and
// write-zeroes of every shape are in flight, and FUA writes and write-zeroes among plain ones.
// A workload throws (failing its test) if the lifecycle's promises to the caller break:
// a request admitted before close() fails, a request issued after close() began does not fail
// with SHUTDOWN, close() rejects without a fault, or a request after close() is not CLOSED.
import { QedError } from '../../src/base/errors.js';
import { type GuestRecorder, type Random, type Workload, messageOf, patternBytes } from './crash-explorer.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SECTOR = 512;

/** One request of a batch: issued through the guest recorder, so the content model knows it. */
export type Request = (g: GuestRecorder) => Promise<void>;

/** A sector-aligned range of `sectors` sectors starting `sectorsIn` sectors into cluster `cluster`. */
function range(cs: number, cluster: number, sectorsIn: number, sectors: number): { offset: number; length: number } {
  return { offset: cluster * cs + sectorsIn * SECTOR, length: sectors * SECTOR };
}

/**
 * A random request shaped to reach the write and zero paths' cases: whole new clusters, a part
 * of one cluster, a run from a cluster that may hold data into ones that may not, a write
 * straddling an L2 table boundary, and write-zeroes aligned, unaligned and with NO_HOLE.
 * `hot` are clusters the workload wrote before, so that some requests land on data in place.
 */
export function randomRequest(rng: Random, cs: number, size: number, perTable: number, hot: number[]): Request {
  const clusters = size / cs;
  const perCluster = cs / SECTOR;
  const near = (): number => (hot.length > 0 && rng.chance(0.6) ? hot[rng.int(hot.length)]! + rng.int(3) - 1 : rng.int(clusters));
  const clampCluster = (c: number, span: number): number => Math.max(0, Math.min(clusters - span, c));
  const bytes = (length: number): Uint8Array => patternBytes(length, rng.int(1 << 30));
  switch (rng.int(7)) {
    case 0: { // whole clusters
      const n = 1 + rng.int(3);
      const { offset, length } = range(cs, clampCluster(near(), n), 0, n * perCluster);
      return (g) => g.write(bytes(length), offset);
    }
    case 1: { // inside one cluster
      const first = rng.int(perCluster);
      const { offset, length } = range(cs, clampCluster(near(), 1), first, 1 + rng.int(perCluster - first));
      return (g) => g.write(bytes(length), offset);
    }
    case 2: { // from the middle of a (maybe written) cluster over the next ones (up to 4 clusters in all)
      const { offset, length } = range(cs, clampCluster(near(), 4), 1 + rng.int(perCluster - 1), perCluster + rng.int(2 * perCluster));
      return (g) => g.write(bytes(length), offset);
    }
    case 3: { // across an L2 table boundary (or the image middle, where there is only one table)
      const tables = Math.max(1, Math.floor(size / perTable));
      const boundary = tables > 1 ? (1 + rng.int(tables - 1)) * perTable : Math.floor(clusters / 2) * cs;
      const before = 1 + rng.int(2 * perCluster);
      const offset = boundary - before * SECTOR;
      const length = (before + 1 + rng.int(2 * perCluster)) * SECTOR;
      return (g) => g.write(bytes(Math.min(length, size - offset)), offset);
    }
    case 4: { // whole clusters of zeros: data zeroed in place, others made zero clusters
      const n = 1 + rng.int(3);
      const { offset, length } = range(cs, clampCluster(near(), n), 0, n * perCluster);
      return (g) => g.writeZeroes(offset, length);
    }
    case 5: { // unaligned zeros: partial edges written as data where they do not read as zeros
      const { offset, length } = range(cs, clampCluster(near(), 3), rng.int(perCluster), 1 + rng.int(2 * perCluster));
      return (g) => g.writeZeroes(offset, length);
    }
    default: { // NO_HOLE: zeros written as data, aligned or not
      const aligned = rng.chance(0.5);
      const { offset, length } = aligned
        ? range(cs, clampCluster(near(), 2), 0, (1 + rng.int(2)) * perCluster)
        : range(cs, clampCluster(near(), 3), rng.int(perCluster), 1 + rng.int(2 * perCluster));
      return (g) => g.writeZeroes(offset, length, { noHole: true });
    }
  }
}

function isCode(err: unknown, code: string): boolean {
  return err instanceof QedError && err.code === code;
}

/**
 * Start `requests` without awaiting them, call close(), try a request while it runs (it must
 * fail with SHUTDOWN and change nothing: it goes to the device directly, not into the guest
 * log), then wait for everything. Every admitted request and close() itself must resolve;
 * afterwards a request fails with CLOSED. A failure here fails the test (the worker throws).
 */
export async function closeWithRequestsInFlight(g: GuestRecorder, rng: Random, requests: Request[]): Promise<void> {
  const device = g.device;
  // Outcomes are collected at once, so that no rejection goes unhandled while others are awaited.
  const inFlight = Promise.allSettled(requests.map((request) => request(g)));
  // Sometimes let the requests get some way (a few microtask turns) before close() begins.
  for (let turns = rng.chance(0.5) ? 0 : rng.int(8); turns > 0; turns--) await null;
  const closing = g.close().then(() => null, (err: unknown) => ({ err }));
  const lateOffset = rng.int(device.size / SECTOR) * SECTOR;
  const late = [
    device.write(patternBytes(SECTOR, 0x1a7e), lateOffset),
    device.writeZeroes(lateOffset, SECTOR, { noHole: true }),
    device.flush(),
  ];
  const lateResults = await Promise.allSettled(late);
  for (const [i, r] of lateResults.entries()) {
    if (r.status === 'fulfilled' || !isCode(r.reason, 'SHUTDOWN')) {
      throw new Error(`request ${i} issued after close() began ${r.status === 'fulfilled' ? 'succeeded' : `failed with ${messageOf(r.reason)}`}, not with SHUTDOWN`);
    }
  }
  for (const [i, r] of (await inFlight).entries()) {
    if (r.status === 'rejected') throw new Error(`request ${i} of ${requests.length}, admitted before close(), failed: ${messageOf(r.reason)}`, { cause: r.reason });
  }
  const closed = await closing;
  if (closed) throw new Error(`close() with requests in flight failed: ${messageOf(closed.err)}`, { cause: closed.err });
  const after = await Promise.allSettled([device.write(patternBytes(SECTOR, 0xc105ed), lateOffset)]);
  if (after[0]!.status === 'fulfilled' || !isCode(after[0]!.reason, 'CLOSED')) throw new Error('a write after close() ended did not fail with CLOSED');
}

/** Writes (awaited) that give the in-flight requests data to land on in place; returns their clusters. */
async function prepare(g: GuestRecorder, rng: Random, cs: number, count: number, within = g.size): Promise<number[]> {
  const hot: number[] = [];
  for (let i = 0; i < count; i++) {
    const cluster = rng.int(within / cs - 1);
    const n = 1 + rng.int(2);
    await g.write(patternBytes(n * cs - rng.int(2) * SECTOR, rng.int(1 << 30)), cluster * cs);
    hot.push(cluster);
    if (rng.chance(0.3)) await g.flush();
  }
  if (rng.chance(0.5)) await g.flush();
  if (rng.chance(0.2)) await g.quiesce();
  return hot;
}

/** Close with requests in flight over several L2 tables (table_size 1: 2 MiB each), most of them allocating. */
const closeOverTables: Workload = {
  name: 'close with writes and zeroes in flight (three L2 tables)', clusterSize: 4 * KiB, tableSize: 1, size: 6 * MiB,
  async run(g, rng) {
    const hot = await prepare(g, rng, 4 * KiB, 3 + rng.int(3));
    const requests = Array.from({ length: 6 + rng.int(5) }, () => randomRequest(rng, 4 * KiB, g.size, 2 * MiB, hot));
    await closeWithRequestsInFlight(g, rng, requests);
  },
};

/** The same over a raw backing file: in-flight allocations copy old content around new bytes ([I2]). */
const closeOverBacking: Workload = {
  name: 'close with writes and zeroes in flight over a raw backing file', clusterSize: 4 * KiB, tableSize: 2, size: 256 * KiB,
  backing: { format: 'raw', size: 256 * KiB },
  async run(g, rng) {
    const hot = await prepare(g, rng, 4 * KiB, 2 + rng.int(3));
    const requests = Array.from({ length: 5 + rng.int(5) }, () => randomRequest(rng, 4 * KiB, g.size, 4 * MiB, hot));
    await closeWithRequestsInFlight(g, rng, requests);
  },
};

/** The smallest table cache: tables are written back under pressure while close() waits for the requests. */
const closeUnderPressure: Workload = {
  name: 'close with requests in flight under table-cache pressure', clusterSize: 4 * KiB, tableSize: 4, size: 8 * MiB, cacheBytes: 16 * KiB,
  async run(g, rng) {
    const hot = await prepare(g, rng, 4 * KiB, 3);
    const requests = Array.from({ length: 5 + rng.int(4) }, () => randomRequest(rng, 4 * KiB, g.size, 8 * MiB, rng.chance(0.5) ? hot : []));
    await closeWithRequestsInFlight(g, rng, requests);
  },
};

/**
 * FUA writes and write-zeroes among plain ones, sometimes several in flight at once, with
 * hardly any flushes: each FUA request must be durable from its acknowledgement on. Sometimes
 * it ends with close() while some of them are in flight, sometimes with no close at all.
 */
function fuaWrites(backing: boolean): Workload {
  const cs = 4 * KiB;
  return {
    name: `FUA writes and zeroes ${backing ? 'over a raw backing file' : 'without a backing file'}`,
    clusterSize: cs, tableSize: 2, size: 256 * KiB, backing: backing ? { format: 'raw', size: 256 * KiB } : undefined,
    async run(g, rng) {
      const hot: number[] = [];
      const fuaRequest = (): Request => {
        const cluster = hot.length > 0 && rng.chance(0.5) ? hot[rng.int(hot.length)]! : rng.int(g.size / cs - 2);
        hot.push(cluster);
        const { offset, length } = range(cs, cluster, rng.int(cs / SECTOR), 1 + rng.int(cs / SECTOR + 4));
        const seed = rng.int(1 << 30);
        if (rng.chance(0.25)) {
          const noHole = rng.chance(0.5);
          return (guest) => guest.writeZeroes(offset, length, { fua: true, noHole });
        }
        return (guest) => guest.write(patternBytes(length, seed), offset, { fua: true });
      };
      for (let round = 0; round < 4; round++) {
        if (rng.chance(0.5)) {
          // One at a time: plain writes, then a FUA write that must not wait for a flush to be durable.
          await randomRequest(rng, cs, g.size, 4 * MiB, hot)(g);
          await fuaRequest()(g);
        } else {
          const batch = Array.from({ length: 2 + rng.int(4) }, () => (rng.chance(0.5) ? fuaRequest() : randomRequest(rng, cs, g.size, 4 * MiB, hot)));
          const results = await Promise.allSettled(batch.map((request) => request(g)));
          for (const r of results) if (r.status === 'rejected') throw new Error(`request failed: ${messageOf(r.reason)}`, { cause: r.reason });
        }
        if (rng.chance(0.1)) await g.flush();
      }
      if (rng.chance(0.5)) {
        await closeWithRequestsInFlight(g, rng, Array.from({ length: 2 + rng.int(3) }, () => (rng.chance(0.6) ? fuaRequest() : randomRequest(rng, cs, g.size, 4 * MiB, hot))));
      }
    },
  };
}

/** Exported for the explorer's worker thread, which imports this file to find them. */
export const closeWorkloads = [closeOverTables, closeOverBacking, closeUnderPressure];
export const fuaWorkloads = [fuaWrites(false), fuaWrites(true)];

