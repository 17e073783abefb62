// Walking images by their block status, so that work is proportional to the data, not to the
// virtual size: an empty 64 TiB image is a handful of runs, not 33 million chunks.
import { chainBlockStatus, type ChainExtent } from '../engine/chain-status.js';
import type { BlockDevice } from '../engine/device.js';

export interface Piece { start: number; length: number }

/** Split [start, start+length) into pieces of at most `size` bytes, aligned to multiples of `size`. */
export function* piecesOf(start: number, length: number, size: number): Generator<Piece> {
  const end = start + length;
  for (let pos = start; pos < end;) {
    const next = Math.min(end, (Math.floor(pos / size) + 1) * size);
    yield { start: pos, length: next - pos };
    pos = next;
  }
}

export interface PairedRun { start: number; length: number; a: ChainExtent; b: ChainExtent }

/** The runs of two devices' block status over [start, end), cut where either changes. */
export async function* pairedRuns(a: BlockDevice, b: BlockDevice, start: number, end: number): AsyncGenerator<PairedRun> {
  if (end <= start) return;
  const ia = chainBlockStatus(a, start, end - start)[Symbol.asyncIterator]();
  const ib = chainBlockStatus(b, start, end - start)[Symbol.asyncIterator]();
  let ra = await ia.next();
  let rb = await ib.next();
  for (let pos = start; pos < end && !ra.done && !rb.done;) {
    const ea = ra.value;
    const eb = rb.value;
    const stop = Math.min(ea.start + ea.length, eb.start + eb.length);
    yield { start: pos, length: stop - pos, a: ea, b: eb };
    pos = stop;
    if (ea.start + ea.length === stop) ra = await ia.next();
    if (eb.start + eb.length === stop) rb = await ib.next();
  }
}
