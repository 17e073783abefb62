// Block status through a whole backing chain, as qemu-img map and the NBD metadata contexts
// base:allocation and qemu:allocation-depth report it: runs of data, zero and absent ranges
// with the depth of the layer that answered. Walked in bounded steps and yielded as it goes,
// so a status of a whole 64 TiB disk costs memory for one step, not for the disk.
import { OutOfRangeError, UsageError, hex } from '../base/errors.js';
import type { BlockDevice, ChainExtent } from './device.js';

export type { ChainExtent };

/** Guest bytes examined per step at least (or 8192 clusters): bounds the extents held at once (at most one per cluster of a step). */
export const CHAIN_STATUS_STEP = 256 * 1024 * 1024;

/**
 * Runs over [start, start+length), merged as qemu-img merges map entries (same flags and
 * depth, same file, host-contiguous offsets). Unallocated with no backing file, or past the
 * end of the backing file, is absent and reads as zeros at the depth of the layer that could
 * not go further (QEMU's get_block_status).
 */
export async function* chainBlockStatus(device: BlockDevice, start: number, length: number): AsyncGenerator<ChainExtent> {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0) {
    throw new UsageError(`invalid block status request: offset ${start}, length ${length}`, { path: device.path });
  }
  if (start + length > device.size) {
    throw new OutOfRangeError(`block status ${hex(start)}+${hex(length)} is past the end of the image (${hex(device.size)})`, { path: device.path, guestOffset: start });
  }
  const end = start + length;
  // At least 8192 clusters a step: with 64 MiB clusters 256 MiB would be four entries.
  const stepBytes = Math.max(CHAIN_STATUS_STEP, device.capabilities.blockSizes.preferred * 8192);
  let pending: ChainExtent | null = null;
  for (let pos = start; pos < end;) {
    const stepEnd = Math.min(end, pos + stepBytes);
    const step: ChainExtent[] = [];
    await statusOfLayer(device, pos, stepEnd, 0, step);
    for (const e of step) {
      if (pending && mergeable(pending, e)) { pending.length += e.length; continue; }
      if (pending) yield pending;
      pending = e;
    }
    pos = stepEnd;
  }
  if (pending) yield pending;
}

async function statusOfLayer(layer: BlockDevice, start: number, end: number, depth: number, out: ChainExtent[]): Promise<void> {
  const extents = await layer.layerStatus(start, Math.min(end, layer.size) - start);
  for (const e of extents) {
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
      if (backing && inBacking > e.guestOffset) await statusOfLayer(backing, e.guestOffset, inBacking, depth + 1, out);
      if (inBacking < eEnd) push(out, { start: inBacking, length: eEnd - inBacking, depth, present: false, zero: true, data: false });
    }
  }
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
