// Block status through a whole backing chain, as qemu-img map and the NBD metadata contexts
// base:allocation and qemu:allocation-depth report it: runs of data, zero and absent ranges
// with the depth of the layer that answered. Walked in steps of a bounded number of runs and
// yielded as it goes, so a status of a whole 64 TiB disk costs memory for one step, not for
// the disk, and a sparse one costs a few requests, not one per fixed stride.
import { OutOfRangeError, UsageError, hex } from '../base/errors.js';
import type { BlockDevice, ChainExtent, LayerExtent } from './device.js';

export type { ChainExtent };

/** Runs one step of the walk holds at most, over all layers: the walk's memory bound. */
export const CHAIN_STATUS_MAX_RUNS = 8192;

/**
 * Runs the first step holds at most; each later step may hold twice the one before, up to
 * CHAIN_STATUS_MAX_RUNS. A walk's caller starts on the first runs while the rest are still
 * unknown: a whole step of 8192 runs of a fragmented raw file is 8192 seeks (about 40 ms
 * here) before convert could read a byte.
 */
export const CHAIN_STATUS_FIRST_RUNS = 64;

/**
 * Guest bytes per step (or 8192 clusters) for a layer without layerStatusUpTo, which can
 * only be asked for a whole range: at most one run per cluster of it.
 */
export const CHAIN_STATUS_STEP = 256 * 1024 * 1024;

/**
 * Runs over [start, start+length), merged as qemu-img merges map entries (same flags and
 * depth, same file, host-contiguous offsets). Unallocated with no backing file, or past the
 * end of the backing file, is absent and reads as zeros at the depth of the layer that could
 * not go further (QEMU's get_block_status). Each step holds at most CHAIN_STATUS_MAX_RUNS
 * runs and covers as much as they reach: an empty 64 TiB image is one step, a fully
 * fragmented one thousands.
 */
export async function* chainBlockStatus(device: BlockDevice, start: number, length: number): AsyncGenerator<ChainExtent> {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0) {
    throw new UsageError(`invalid block status request: offset ${start}, length ${length}`, { path: device.path });
  }
  if (start + length > device.size) {
    throw new OutOfRangeError(`block status ${hex(start)}+${hex(length)} is past the end of the image (${hex(device.size)})`, { path: device.path, guestOffset: start });
  }
  const end = start + length;
  let pending: ChainExtent | null = null;
  for (let pos = start, budget = CHAIN_STATUS_FIRST_RUNS; pos < end; budget = Math.min(CHAIN_STATUS_MAX_RUNS, budget * 2)) {
    const step: ChainExtent[] = [];
    pos = await statusOfLayer(device, pos, end, 0, step, budget);
    for (const e of step) {
      if (pending && mergeable(pending, e)) { pending.length += e.length; continue; }
      if (pending) yield pending;
      pending = e;
    }
  }
  if (pending) yield pending;
}

/**
 * Adds the chain's runs from `start` on to `out` until it holds `budget`; returns where they
 * end (past `start` when `out` came empty). A backing layer gets the same budget, so the
 * runs of a fragmented backing file under a sparse top stop the step where the budget ran
 * out, and the next step asks the top again from there.
 */
async function statusOfLayer(layer: BlockDevice, start: number, end: number, depth: number, out: ChainExtent[], budget: number): Promise<number> {
  const extents = await layerRunsFrom(layer, start, Math.min(end, layer.size), Math.max(1, budget - out.length));
  let reached = start;
  for (const e of extents) {
    if (out.length >= budget) return reached;
    const eEnd = e.guestOffset + e.length;
    if (e.kind === 'data') {
      push(out, { start: e.guestOffset, length: e.length, depth, present: true, zero: false, data: true, hostOffset: e.hostOffset, filename: layer.path });
    } else if (e.kind === 'zero') {
      const hasOffset = e.hostOffset !== undefined;
      push(out, { start: e.guestOffset, length: e.length, depth, present: true, zero: true, data: false,
        ...(hasOffset ? { hostOffset: e.hostOffset, filename: layer.path } : {}) });
    } else {
      const backing = layer.backing;
      const inBacking = backing ? Math.max(e.guestOffset, Math.min(eEnd, backing.size)) : e.guestOffset;
      if (backing && inBacking > e.guestOffset) {
        const below = await statusOfLayer(backing, e.guestOffset, inBacking, depth + 1, out, budget);
        if (below < inBacking) return below;
      }
      if (inBacking < eEnd) push(out, { start: inBacking, length: eEnd - inBacking, depth, present: false, zero: true, data: false });
    }
    reached = eEnd;
  }
  return reached;
}

/** One bounded request for the layer's runs from `start`: as far as maxRuns reach, or one fixed step where the layer cannot say. */
export function layerRunsFrom(layer: BlockDevice, start: number, end: number, maxRuns: number): Promise<LayerExtent[]> {
  if (layer.layerStatusUpTo) return layer.layerStatusUpTo(start, end - start, maxRuns);
  const stepBytes = Math.max(CHAIN_STATUS_STEP, layer.capabilities.blockSizes.preferred * 8192);
  return layer.layerStatus(start, Math.min(end, start + stepBytes) - start);
}

/** qemu-img's entry_mergeable: same flags and depth, same file, host-contiguous offsets. */
function mergeable(prev: ChainExtent, next: ChainExtent): boolean {
  return prev.start + prev.length === next.start && prev.depth === next.depth && prev.present === next.present
    && prev.zero === next.zero && prev.data === next.data && prev.filename === next.filename
    && (prev.hostOffset === undefined) === (next.hostOffset === undefined)
    && (prev.hostOffset === undefined || prev.hostOffset + prev.length === next.hostOffset);
}

function push(out: ChainExtent[], entry: ChainExtent): void {
  const prev = out[out.length - 1];
  if (prev && mergeable(prev, entry)) prev.length += entry.length;
  else out.push(entry);
}
