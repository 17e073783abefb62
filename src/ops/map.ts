// Block status across a backing chain, as qemu-img map reports it: runs of data, zero and
// absent ranges, with the depth of the layer that answered and its host offset.
import type { BlockDevice } from '../engine/device.js';

export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
  /** The file holding the data (human output's "File" column). */
  filename?: string;
}

/**
 * Walk down the chain until a layer says data or zero. Unallocated with no backing file, or
 * past the end of the backing file, is absent and reads as zeros at the depth of the layer
 * that could not go further (QEMU's get_block_status).
 */
export async function mapChain(device: BlockDevice, start: number, length: number): Promise<MapEntry[]> {
  const out: MapEntry[] = [];
  await mapLayer(device, start, start + length, 0, out);
  return out;
}

async function mapLayer(layer: BlockDevice, start: number, end: number, depth: number, out: MapEntry[]): Promise<void> {
  const extents = await layer.blockStatus(start, Math.min(end, layer.size) - start);
  for (const e of extents) {
    const eEnd = e.guestOffset + e.length;
    if (e.kind === 'data') {
      push(out, { start: e.guestOffset, length: e.length, depth, present: true, zero: false, data: true, offset: e.hostOffset, filename: layer.path });
    } else if (e.kind === 'zero') {
      const hasOffset = e.hostOffset !== undefined;
      push(out, { start: e.guestOffset, length: e.length, depth, present: true, zero: true, data: false,
        ...(hasOffset ? { offset: e.hostOffset, filename: layer.path } : {}) });
    } else {
      const backing = layer.backing;
      const inBacking = backing ? Math.max(e.guestOffset, Math.min(eEnd, backing.size)) : e.guestOffset;
      if (backing && inBacking > e.guestOffset) await mapLayer(backing, e.guestOffset, inBacking, depth + 1, out);
      if (inBacking < eEnd) push(out, { start: inBacking, length: eEnd - inBacking, depth, present: false, zero: true, data: false });
    }
  }
}

/** qemu-img's entry_mergeable: same flags and depth, same file, host-contiguous offsets. */
function push(out: MapEntry[], entry: MapEntry): void {
  const prev = out[out.length - 1];
  if (prev && prev.start + prev.length === entry.start && prev.depth === entry.depth && prev.present === entry.present
    && prev.zero === entry.zero && prev.data === entry.data && prev.filename === entry.filename
    && (prev.offset === undefined) === (entry.offset === undefined)
    && (prev.offset === undefined || prev.offset + prev.length === entry.offset)) {
    prev.length += entry.length;
    return;
  }
  out.push(entry);
}
