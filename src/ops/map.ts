// Block status across a backing chain, collected (qemu-img map). The walk itself is the
// engine's chainBlockStatus; use it directly to stream a large map.
import type { BlockDevice } from '../engine/device.js';
import { chainBlockStatus, type ChainExtent } from '../engine/chain-status.js';

export type MapEntry = ChainExtent;

/** Every run of [start, start+length), in one array: for bounded ranges. */
export async function mapChain(device: BlockDevice, start: number, length: number): Promise<MapEntry[]> {
  const out: MapEntry[] = [];
  for await (const e of chainBlockStatus(device, start, length)) out.push(e);
  return out;
}
