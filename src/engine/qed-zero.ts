// Write-zeroes (QEMU's qed_co_pwrite_zeroes): whole clusters that hold no data become zero
// clusters (entry 1) without writing data; clusters with data get zeros written in place
// (unlinking them would leak them: QED has no free list); partial clusters at the edges are
// written as ordinary writes of zeros, unless they already read as zeros.
//
// Bounded work: the range is walked in steps of at most one L2 table's coverage and
// STEP_CLUSTERS clusters, each under its own range lock; between steps the walk waits for
// cache-pressure writeback and yields the event loop, so a zero request over the whole disk
// holds neither memory nor the loop in proportion to its length.
import { FastZeroError, hex } from '../base/errors.js';
import { alignUp } from '../base/math.js';
import { writeZerosAt } from '../io/zeros.js';
import { QED_ZERO_CLUSTER } from '../format/constants.js';
import type { Geometry } from '../format/geometry.js';
import { settleAll, type WriteZeroesOptions } from './device.js';
import type { QedContext } from './qed-context.js';
import { ensureL2Table, setL2Entries } from './qed-tables.js';
import { writeRange } from './qed-write.js';
import { ENTRIES_PER_CHUNK } from './table-cache.js';

/** Clusters per step: 16 table chunks (64 KiB of entries), whatever the geometry. */
export const STEP_CLUSTERS = 16 * ENTRIES_PER_CHUNK;

/** Bytes of zeros written per call when zeros must really be written. */
const ZERO_PIECE_BYTES = 1024 * 1024;

/** Zeros over [offset, offset+length); `toImageEnd` lets a partial last cluster count as whole. */
export async function zeroRange(ctx: QedContext, offset: number, length: number, toImageEnd: boolean, options: WriteZeroesOptions): Promise<void> {
  const cs = ctx.geometry.clusterSize;
  const end = offset + length;
  const alignedStart = Math.min(alignUp(offset, cs), end);
  const alignedEnd = Math.max(alignedStart, end - (end % cs === 0 || toImageEnd ? 0 : end % cs));
  const noHole = options.noHole ?? false;
  if (options.fastZero) await refuseUnlessFast(ctx, offset, end, alignedStart, alignedEnd, noHole);
  const parts: Promise<void>[] = [];
  if (offset < alignedStart) parts.push(zeroPartial(ctx, offset, alignedStart, noHole));
  if (alignedStart < alignedEnd) parts.push(zeroWholeClusters(ctx, alignedStart, alignedEnd, noHole));
  if (alignedEnd < end) parts.push(zeroPartial(ctx, alignedEnd, end, noHole));
  await settleAll(parts); // [L2]
}

/** Where the step from `pos` ends: within one L2 table and at most STEP_CLUSTERS clusters. */
export function endOfStep(g: Geometry, pos: number, end: number): number {
  return Math.min(end, g.l2CoverageEnd(pos), g.clusterStart(pos) + STEP_CLUSTERS * g.clusterSize);
}

/** Steps of [start, end): within one L2 table and at most STEP_CLUSTERS clusters each. */
async function forEachStep(ctx: QedContext, start: number, end: number, step: (from: number, to: number) => Promise<void>): Promise<void> {
  for (let pos = start; pos < end;) {
    const stepEnd = endOfStep(ctx.geometry, pos, end);
    await step(pos, stepEnd);
    pos = stepEnd;
    if (pos < end) {
      await ctx.writeback.relievePressure();
      await ctx.scheduler.yieldTurn();
    }
  }
}

/** Part of one cluster: an ordinary write of zeros where the bytes do not already read as zeros. */
async function zeroPartial(ctx: QedContext, start: number, end: number, noHole: boolean): Promise<void> {
  const extents = await ctx.lookup.mapRange(start, end - start);
  await settleAll(extents.map((e) => {
    const alreadyZero = e.kind === 'zero' || (e.kind === 'unallocated' && !ctx.hasBacking);
    if (alreadyZero && !noHole) return undefined;
    return writeRange(ctx, new Uint8Array(e.length), e.guestOffset);
  }));
}

/** [start, end) is cluster-aligned, or ends at the image end. */
function zeroWholeClusters(ctx: QedContext, start: number, end: number, noHole: boolean): Promise<void> {
  if (noHole) return writeZeroData(ctx, start, end);
  return forEachStep(ctx, start, end, (from, to) => zeroClustersStep(ctx, from, to));
}

async function zeroClustersStep(ctx: QedContext, start: number, end: number): Promise<void> {
  const cs = ctx.geometry.clusterSize;
  const unlock = await ctx.allocationLocks.lock(Math.floor(start / cs), Math.ceil(end / cs) - 1);
  try {
    ctx.checkNotPoisoned();
    const extents = await ctx.lookup.mapRange(start, end - start);
    for (const e of extents) {
      if (e.kind === 'zero') continue;
      if (e.kind === 'data') {
        await writeZerosAt(ctx.file, e.hostOffset, e.length);
        continue;
      }
      ctx.writeback.allocationsInFlight++;
      try {
        const l2Offset = await ensureL2Table(ctx, ctx.geometry.l1Index(e.guestOffset));
        await setL2Entries(ctx, l2Offset, e.guestOffset / cs, Math.ceil(e.length / cs), () => QED_ZERO_CLUSTER);
      } finally {
        ctx.writeback.allocationsInFlight--;
      }
      ctx.metadataChanged();
    }
  } finally {
    unlock();
  }
}

/** NO_HOLE: the range must end up allocated, so zeros are written as data, one bounded piece at a time. */
async function writeZeroData(ctx: QedContext, start: number, end: number): Promise<void> {
  const pieceBytes = Math.max(ctx.geometry.clusterSize, ZERO_PIECE_BYTES);
  const zeros = new Uint8Array(Math.min(pieceBytes, end - start));
  await forEachStep(ctx, start, end, async (from, to) => {
    for (let pos = from; pos < to; pos += zeros.length) {
      await writeRange(ctx, zeros.subarray(0, Math.min(zeros.length, to - pos)), pos);
    }
  });
}

/**
 * FAST_ZERO: refuse, before changing anything, a range that would need zeros written over
 * data, a copy-on-write of backing data at a partial edge, or (with NO_HOLE) any allocation.
 * A concurrent write may still allocate in the range after this scan; the zeroing then writes
 * zeros there, which is correct, only slower.
 */
async function refuseUnlessFast(ctx: QedContext, start: number, end: number, alignedStart: number, alignedEnd: number, noHole: boolean): Promise<void> {
  const path = ctx.file.path;
  if (noHole && end > start) throw new FastZeroError(`zeroing ${hex(start)}+${hex(end - start)} without holes means writing zeros`, { path, guestOffset: start });
  const slowEdge = async (from: number, to: number): Promise<void> => {
    if (from >= to) return;
    for (const e of await ctx.lookup.mapRange(from, to - from)) {
      if (e.kind === 'data' || (e.kind === 'unallocated' && ctx.hasBacking)) {
        throw new FastZeroError(`partial cluster at ${hex(e.guestOffset)} would need zeros written`, { path, guestOffset: e.guestOffset });
      }
    }
  };
  await slowEdge(start, alignedStart);
  await slowEdge(alignedEnd, end);
  await forEachStep(ctx, alignedStart, alignedEnd, async (from, to) => {
    for (const e of await ctx.lookup.mapRange(from, to - from)) {
      if (e.kind === 'data') throw new FastZeroError(`range at ${hex(e.guestOffset)} holds data that would need zeros written`, { path, guestOffset: e.guestOffset });
    }
  });
}
