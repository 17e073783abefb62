// A BlockFile that records what the engine asked of it, so that a test can ask "what could the
// disk hold if the power failed here?" (SQLite's crash VFS, test6.c, kept as a log rather than
// applied in place). It only records and materialises; which crash states to try and how to
// judge them is the explorer's job (crash-explorer.ts).
//
// The device model the engine's invariants [I1]..[I5] are written against:
//  - a write or truncate reaches the page cache at once (later reads see it) and is durable
//    only once a flush that was issued *after it completed* has itself completed;
//  - at a crash, any subset of the operations not yet durable may have reached the disk,
//    applied in the order they were issued; a write may be torn at 512-byte sectors (each
//    sector holds its old or its new bytes, never a mix inside a sector).
// Every event takes a tick from a clock shared with the guest-level recorder, so that guest
// acknowledgements and file flushes can be put in one order.
import { MemoryFile } from '../../src/io/memory-file.js';
import type { BlockFile } from '../../src/io/block-file.js';
import { IoError } from '../../src/base/errors.js';

export const SECTOR = 512;

/** One sequence of ticks for file events and guest events alike. */
export class EventClock {
  private ticks = 0;
  tick(): number { return ++this.ticks; }
}

interface OpTimes {
  /** Position in the log (issue order). */
  index: number;
  issued: number;
  /** Infinity while in flight, and for ever if it never completed. */
  done: number;
}
export interface WriteOp extends OpTimes { kind: 'write'; offset: number; bytes: Uint8Array }
export interface TruncateOp extends OpTimes { kind: 'truncate'; size: number }
export interface FlushOp extends OpTimes { kind: 'flush' }
export type FileOp = WriteOp | TruncateOp | FlushOp;
export type DiskOp = WriteOp | TruncateOp;

export class CrashFile implements BlockFile {
  readonly readOnly = false;
  readonly log: FileOp[] = [];
  /** What reads see: the durable base with every logged operation applied (the page cache). */
  private readonly cached: MemoryFile;
  private closed = false;

  /**
   * `durableBase` is the disk before the first logged operation; it is never changed.
   * `settle` runs between an operation's issue and its completion: a seeded random delay
   * lets concurrent requests complete out of order, as a real queue would.
   */
  constructor(readonly durableBase: MemoryFile, private readonly clock: EventClock,
    private readonly settle: () => Promise<void> = () => Promise.resolve()) {
    this.cached = durableBase.clone();
  }

  get path(): string { return this.durableBase.path; }

  async read(buf: Uint8Array, offset: number): Promise<number> {
    this.checkOpen();
    return this.cached.readSync(buf, offset);
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.checkOpen();
    // A copy, never a view: Buffer's slice() shares memory, and callers reuse pooled buffers.
    const op = this.begin<WriteOp>({ kind: 'write', offset, bytes: new Uint8Array(buf) });
    this.cached.writeSync(op.bytes, offset);
    await this.complete(op);
  }

  async truncate(size: number): Promise<void> {
    this.checkOpen();
    const op = this.begin<TruncateOp>({ kind: 'truncate', size });
    this.cached.truncateSync(size);
    await this.complete(op);
  }

  async flush(): Promise<void> {
    this.checkOpen();
    await this.complete(this.begin<FlushOp>({ kind: 'flush' }));
  }

  async size(): Promise<number> { this.checkOpen(); return this.cached.sizeSync; }
  async close(): Promise<void> { this.closed = true; }

  private begin<T extends FileOp>(fields: Omit<T, 'index' | 'issued' | 'done'>): T {
    const op = { ...fields, index: this.log.length, issued: this.clock.tick(), done: Infinity } as T;
    this.log.push(op);
    return op;
  }

  private async complete(op: FileOp): Promise<void> {
    await this.settle();
    op.done = this.clock.tick();
  }

  private checkOpen(): void {
    if (this.closed) throw new IoError('crash file is closed', { path: this.path });
  }
}

/**
 * The crash moments between two flush completions share what is surely on disk; an epoch
 * groups them. A crash in the epoch has every `durable` operation and any subset of the
 * `pending` ones (issued before the epoch's end, not durable at its start).
 */
export interface CrashEpoch {
  /** Crashes in this epoch happen before this tick: the completion of the flush that ends it (Infinity: the end of the run). */
  before: number;
  durable: DiskOp[];
  pending: DiskOp[];
}

export function crashEpochs(log: readonly FileOp[]): CrashEpoch[] {
  const diskOps = log.filter((op): op is DiskOp => op.kind !== 'flush');
  const flushes = log.filter((op) => op.kind === 'flush' && op.done !== Infinity).sort((a, b) => a.done - b.done);
  const epochs: CrashEpoch[] = [];
  // A flush completed before the crash makes durable whatever had completed when it was issued.
  let durableBefore = -Infinity;
  for (const end of [...flushes.map((f) => f.done), Infinity]) {
    const durable = diskOps.filter((op) => op.done < durableBefore);
    const pending = diskOps.filter((op) => !(op.done < durableBefore) && op.issued < end);
    epochs.push({ before: end, durable, pending });
    const flush = flushes.find((f) => f.done === end);
    if (flush) durableBefore = Math.max(durableBefore, flush.issued);
  }
  return epochs;
}

/** One pending operation in a crash state; a torn write keeps only the sectors `keeps` accepts. */
export interface LandedOp {
  op: DiskOp;
  keeps?: (sector: number) => boolean;
  /** How it was torn, for reports. */
  tear?: string;
}

/**
 * Builds disks after a crash. The durable image of each epoch is kept and extended from one
 * epoch to the next, so a crash state costs one copy of a small image plus its pending ops.
 */
export class CrashDisk {
  private base: MemoryFile;
  private applied = new Set<number>();
  private highestApplied = -1;

  constructor(private readonly initial: MemoryFile) {
    this.base = initial.clone();
  }

  /** The disk after a crash in `epoch` in which exactly `landed` of its pending operations reached it. */
  materialise(epoch: CrashEpoch, landed: readonly LandedOp[]): MemoryFile {
    this.advanceTo(epoch.durable);
    const disk = this.base.clone();
    for (const { op, keeps } of [...landed].sort((a, b) => a.op.index - b.op.index)) applyOp(disk, op, keeps);
    return disk;
  }

  private advanceTo(durable: readonly DiskOp[]): void {
    const missing = durable.filter((op) => !this.applied.has(op.index));
    const extendsInOrder = durable.length === this.applied.size + missing.length
      && missing.every((op) => op.index > this.highestApplied);
    if (!extendsInOrder) {
      // An operation completed late (or the epochs were visited out of order): replay from the start.
      this.base = this.initial.clone();
      this.applied.clear();
      this.highestApplied = -1;
      missing.length = 0;
      missing.push(...durable);
    }
    for (const op of missing) {
      applyOp(this.base, op);
      this.applied.add(op.index);
      this.highestApplied = Math.max(this.highestApplied, op.index);
    }
  }
}

export function applyOp(disk: MemoryFile, op: DiskOp, keeps?: (sector: number) => boolean): void {
  if (op.kind === 'truncate') { disk.truncateSync(op.size); return; }
  if (!keeps) { disk.writeSync(op.bytes, op.offset); return; }
  const end = op.offset + op.bytes.length;
  for (let sector = Math.floor(op.offset / SECTOR); sector * SECTOR < end; sector++) {
    if (!keeps(sector)) continue;
    const from = Math.max(op.offset, sector * SECTOR);
    const to = Math.min(end, (sector + 1) * SECTOR);
    disk.writeSync(op.bytes.subarray(from - op.offset, to - op.offset), from);
  }
}

/** The absolute sectors a write touches: the unit a torn write keeps or loses. */
export function sectorsOf(op: WriteOp): { first: number; count: number } {
  const first = Math.floor(op.offset / SECTOR);
  const last = Math.floor((op.offset + op.bytes.length - 1) / SECTOR);
  return { first, count: last - first + 1 };
}
