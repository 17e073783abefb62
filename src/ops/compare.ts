// `compare`: guest content of two images, as qemu-img compare judges it: a shorter image
// compares as if padded with zeros (unless strict), ranges both chains call zero are not read,
// and the first difference is reported at its 512-byte sector.
import { throwIfAborted } from '../base/errors.js';
import type { FileStore } from '../io/block-file.js';
import type { ImageFormat } from '../format/probe.js';
import { settleAll, type BlockDevice } from '../engine/device.js';
import { chainBlockStatus } from '../engine/chain-status.js';
import { pairedRuns, piecesOf } from './walk.js';
import { openDevice } from './open.js';
import type { BackingPolicy } from '../engine/open.js';
import { isAllZero, sameBytes } from './zero-detect.js';

/** Identical, or where the first difference is (offset: the first differing sector's byte offset). */
export type CompareResult =
  | { kind: 'identical'; sizeMismatch: boolean }
  /** beyondShorter: the difference is past the shorter image's end (the longer one holds data there). */
  | { kind: 'content-mismatch'; offset: number; sizeMismatch: boolean; beyondShorter: boolean }
  | { kind: 'size-mismatch' }
  | { kind: 'status-mismatch'; offset: number };

export interface CompareOptions {
  formatA?: ImageFormat; formatB?: ImageFormat; strict?: boolean; store?: FileStore; chunkSize?: number;
  /** Open both images letting others write them meanwhile (qemu-img -U). */
  forceShare?: boolean;
  signal?: AbortSignal;
  /** Which backing files may be followed (default: the process-wide policy, else any). */
  backingPolicy?: BackingPolicy;
  /** Guest bytes compared so far, of the shorter image's size. */
  onProgress?: (done: number, total: number) => void;
}

export async function compareImages(pathA: string, pathB: string, options: CompareOptions = {}): Promise<CompareResult> {
  const a = await openDevice(pathA, { readOnly: true, format: options.formatA, store: options.store, forceShare: options.forceShare, backingPolicy: options.backingPolicy });
  try {
    const b = await openDevice(pathB, { readOnly: true, format: options.formatB, store: options.store, forceShare: options.forceShare, backingPolicy: options.backingPolicy });
    try {
      return await compareDevices(a, b, options.strict ?? false, options.chunkSize ?? 1024 * 1024, options);
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
}

/**
 * Walked by both images' block status together: ranges where both read as zeros are not
 * read at all, so comparing two empty 64 TiB images costs a few runs.
 */
export async function compareDevices(a: BlockDevice, b: BlockDevice, strict: boolean, chunkSize: number, control: Pick<CompareOptions, 'signal' | 'onProgress'> = {}): Promise<CompareResult> {
  const sizeMismatch = a.size !== b.size;
  if (sizeMismatch && strict) return { kind: 'size-mismatch' };
  const common = Math.min(a.size, b.size);
  const bufA = new Uint8Array(chunkSize);
  const bufB = new Uint8Array(chunkSize);
  for await (const run of pairedRuns(a, b, 0, common)) {
    throwIfAborted(control.signal, 'compare', a.path);
    control.onProgress?.(run.start, common);
    if (strict && (run.a.present !== run.b.present || run.a.zero !== run.b.zero || run.a.data !== run.b.data)) {
      return { kind: 'status-mismatch', offset: run.start };
    }
    if (run.a.zero && run.b.zero) continue;
    for (const { start, length } of piecesOf(run.start, run.length, chunkSize)) {
      throwIfAborted(control.signal, 'compare', a.path);
      const ra = bufA.subarray(0, length);
      const rb = bufB.subarray(0, length);
      await settleAll([a.read(ra, start), b.read(rb, start)]);
      const at = firstDifference(ra, rb);
      if (at >= 0) return { kind: 'content-mismatch', offset: sectorOf(start + at), sizeMismatch, beyondShorter: false };
    }
  }
  control.onProgress?.(common, common);
  // The longer image must read as zeros past the shorter one's end.
  const longer = a.size > b.size ? a : b;
  const buf = new Uint8Array(chunkSize);
  for await (const run of chainBlockStatus(longer, common, longer.size - common)) {
    if (run.zero) continue;
    for (const { start, length } of piecesOf(run.start, run.length, chunkSize)) {
      const piece = buf.subarray(0, length);
      await longer.read(piece, start);
      if (!isAllZero(piece)) return { kind: 'content-mismatch', offset: sectorOf(start + piece.findIndex((x) => x !== 0)), sizeMismatch, beyondShorter: true };
    }
  }
  return { kind: 'identical', sizeMismatch };
}

function firstDifference(x: Uint8Array, y: Uint8Array): number {
  if (sameBytes(x, y)) return -1;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

function sectorOf(offset: number): number {
  return offset - (offset % 512);
}
