// `convert`: copy a guest image into a new (or existing, -n) raw or QED image. The output is
// sparse: ranges the source chain reports as zero are not read, and zero blocks of at least
// `sparseSize` bytes in data are not written. With a backing file for the target (-B) only
// what differs from that backing is written. Many chunks are in flight at once.
import { AbortError, UsageError, throwIfAborted } from '../base/errors.js';
import { alignUp } from '../base/math.js';
import type { FileStore } from '../io/block-file.js';
import type { ImageFormat } from '../format/probe.js';
import { settleAll, type BlockDevice } from '../engine/device.js';
import { createImage } from './create.js';
import { openDevice } from './open.js';
import type { BackingPolicy } from '../engine/open.js';
import { runPoolOver } from './pool.js';
import { type Piece, piecesOf } from './walk.js';
import { chainBlockStatus } from '../engine/chain-status.js';
import { forEachDataRun, isAllZero, sameBytes, zeroRuns } from './zero-detect.js';

export interface ConvertOptions {
  sourceFormat?: ImageFormat;
  /** Default 'raw', as qemu-img. */
  targetFormat?: ImageFormat;
  /** QED cluster size of a new target. */
  clusterSize?: number;
  /** QED clusters per table of a new target. */
  tableSize?: number;
  /** -B: the target's backing file; only what differs from it is written. */
  backingFile?: string;
  backingFormat?: ImageFormat;
  /** -S: zero runs at least this long are left unwritten; 0 writes everything. */
  sparseSize?: number;
  /** -n: the target exists already; do not create it. */
  noCreate?: boolean;
  /** Requests in flight (qemu-img -m; default 8). */
  inFlight?: number;
  chunkSize?: number;
  store?: FileStore;
  /** Open the source letting others write it meanwhile (qemu-img -U). */
  forceShare?: boolean;
  /** Guest bytes copied (or skipped as zeros) so far, of the source's size. */
  onProgress?: (done: number, total: number) => void;
  /** Stops the copy between chunks (AbortError); the target is closed consistent, partly written. */
  signal?: AbortSignal;
  /** Which backing files may be followed (default: the process-wide policy, else any). */
  backingPolicy?: BackingPolicy;
  /**
   * qemu-img convert --salvage: a sector that cannot be read (or whose status cannot be) is
   * copied as zeros and reported here, and the copy goes on; without it the first error ends it.
   */
  salvage?: (problem: SalvagedProblem) => void;
}

/** What --salvage copied as zeros: a sector whose data, or whose block status, could not be read. */
export interface SalvagedProblem { what: 'data' | 'block status'; offset: number; error: unknown }

export const DEFAULT_SPARSE_SIZE = 4096;

export async function convertImage(sourcePath: string, targetPath: string, options: ConvertOptions = {}): Promise<void> {
  const sparseSize = options.sparseSize ?? DEFAULT_SPARSE_SIZE;
  if (!Number.isSafeInteger(sparseSize) || sparseSize < 0 || (sparseSize !== 0 && sparseSize % 512 !== 0)) {
    throw new UsageError(`invalid sparse size ${sparseSize}: a multiple of 512, or 0`);
  }
  const source = await openDevice(sourcePath, { readOnly: true, format: options.sourceFormat, store: options.store, forceShare: options.forceShare, backingPolicy: options.backingPolicy });
  let target: BlockDevice | null = null;
  try {
    const targetFormat = options.targetFormat ?? 'raw';
    if (!options.noCreate) {
      await createImage(targetPath, {
        format: targetFormat,
        size: targetFormat === 'qed' ? alignUp(source.size, 512) : source.size,
        clusterSize: options.clusterSize, tableSize: options.tableSize,
        backingFile: options.backingFile, backingFormat: options.backingFormat, store: options.store, backingPolicy: options.backingPolicy,
      });
    }
    target = await openDevice(targetPath, { format: options.noCreate ? undefined : targetFormat, store: options.store, backingPolicy: options.backingPolicy });
    if (target.size < source.size) {
      throw new UsageError(`target '${targetPath}' (${target.size} bytes) is smaller than the source (${source.size} bytes)`);
    }
    await copyContent(source, target, {
      sparseSize,
      targetIsFresh: !options.noCreate,
      inFlight: options.inFlight ?? 8,
      chunkSize: options.chunkSize ?? 2 * 1024 * 1024,
      onProgress: options.onProgress,
      signal: options.signal,
      salvage: options.salvage,
    });
    await target.flush();
  } finally {
    await target?.close().catch(() => undefined);
    await source.close();
  }
}

interface CopyPlan {
  sparseSize: number; targetIsFresh: boolean; inFlight: number; chunkSize: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  salvage?: (problem: SalvagedProblem) => void;
}

const SECTOR = 512;

/**
 * Chunk buffers are reused: a buffer is free again once its chunk's writes completed, and
 * allocating a fresh multi-megabyte buffer per chunk cost more in garbage collection than
 * the copy itself. Reads fill every byte (zeros past the end), so nothing needs clearing.
 */
class BufferPool {
  private free: Buffer[] = [];
  constructor(private readonly size: number) {}
  take(): Buffer { return this.free.pop() ?? Buffer.allocUnsafe(this.size); }
  give(buf: Buffer): void { this.free.push(buf); }
}

/**
 * Driven by the source's block status: a run that reads as zeros costs nothing when the
 * target already reads zeros (fresh, no backing file), so an empty 64 TiB source is a few
 * runs; everything else is copied in chunks, several in flight.
 */
async function copyContent(source: BlockDevice, target: BlockDevice, plan: CopyPlan): Promise<void> {
  const size = source.size;
  let done = 0;
  plan.onProgress?.(0, size);
  const buffers = new BufferPool(plan.chunkSize);
  // What the target shows now: zeros when fresh without a backing file; otherwise it is read.
  const targetReadsZero = plan.targetIsFresh && target.backing === null;
  const report = (length: number): void => { done += length; plan.onProgress?.(done, size); };
  async function* work(): AsyncGenerator<Piece & { zero: boolean }> {
    let at = 0;
    while (at < size) {
      try {
        for await (const run of chainBlockStatus(source, at, size - at)) {
          throwIfAborted(plan.signal, 'convert', source.path);
          at = run.start + run.length;
          if (run.zero && plan.sparseSize !== 0 && targetReadsZero) { report(run.length); continue; }
          for (const piece of piecesOf(run.start, run.length, plan.chunkSize)) yield { ...piece, zero: run.zero };
        }
      } catch (err) {
        if (!plan.salvage || err instanceof AbortError) throw err;
        // As qemu-img --salvage: the sector whose status failed is read as data; the walk resumes after it.
        plan.salvage({ what: 'block status', offset: at, error: err });
        const length = Math.min(SECTOR, size - at);
        yield { start: at, length, zero: false };
        at += length;
      }
    }
  }
  await runPoolOver(work(), plan.inFlight, async ({ start, length, zero }) => {
    throwIfAborted(plan.signal, 'convert', source.path);
    const data = buffers.take();
    const current = targetReadsZero ? null : buffers.take(); // what the target holds, when it must be compared
    try {
      // The piece's status comes from the walk: every piece of a run reads alike.
      await copyChunk(source, target, { start, length, zero, targetReadsZero }, plan, data.subarray(0, length), current?.subarray(0, length) ?? null);
    } finally {
      buffers.give(data);
      if (current) buffers.give(current);
    }
    report(length);
  });
}

interface ChunkJob extends Piece {
  /** The source reads as zeros over the whole piece. */
  zero: boolean;
  targetReadsZero: boolean;
}

async function copyChunk(source: BlockDevice, target: BlockDevice, job: ChunkJob, plan: CopyPlan, data: Buffer, scratch: Buffer | null): Promise<void> {
  const { start, length, targetReadsZero } = job;
  if (job.zero && plan.sparseSize !== 0) {
    if (targetReadsZero || !scratch) return;
    await target.read(scratch, start);
    if (!isAllZero(scratch)) await target.writeZeroes(start, length);
    return;
  }
  await readSource(source, data, start, plan.salvage);
  if (plan.sparseSize === 0) {
    await target.write(data, start);
    return;
  }
  if (targetReadsZero) {
    // Only the data is written; zero blocks are already what the target reads.
    await forEachDataRun(data, plan.sparseSize, (from, to) => target.write(data.subarray(from, to), start + from));
    return;
  }
  const current = scratch!; // taken whenever the target is not known to read zeros
  await target.read(current, start);
  const writes: Promise<void>[] = [];
  for (const run of zeroRuns(data, plan.sparseSize)) {
    const piece = data.subarray(run.start, run.start + run.length);
    const now = current.subarray(run.start, run.start + run.length);
    if (sameBytes(piece, now)) continue;
    writes.push(run.zero ? target.writeZeroes(start + run.start, run.length) : writeDiffering(target, piece, now, start + run.start, plan.sparseSize));
  }
  await settleAll(writes);
}

/** Read a piece; with salvage, a failed read is retried sector by sector and unreadable sectors read as zeros. */
async function readSource(source: BlockDevice, data: Uint8Array, start: number, salvage: ((problem: SalvagedProblem) => void) | undefined): Promise<void> {
  try {
    await source.read(data, start);
    return;
  } catch (err) {
    if (!salvage) throw err;
  }
  for (let at = 0; at < data.length; at += SECTOR) {
    const sector = data.subarray(at, Math.min(at + SECTOR, data.length));
    try {
      await source.read(sector, start + at);
    } catch (err) {
      salvage({ what: 'data', offset: start + at, error: err });
      sector.fill(0);
    }
  }
}

/** Over a backing file, write only the blocks that differ from what the target shows. */
async function writeDiffering(target: BlockDevice, wanted: Uint8Array, now: Uint8Array, offset: number, granularity: number): Promise<void> {
  let runStart = -1;
  const writes: Promise<void>[] = [];
  const flush = (end: number) => {
    if (runStart >= 0) writes.push(target.write(wanted.subarray(runStart, end), offset + runStart));
    runStart = -1;
  };
  for (let pos = 0; pos < wanted.length; pos += granularity) {
    const end = Math.min(pos + granularity, wanted.length);
    const same = sameBytes(wanted.subarray(pos, end), now.subarray(pos, end));
    if (same) flush(pos);
    else if (runStart < 0) runStart = pos;
  }
  flush(wanted.length);
  await settleAll(writes);
}
