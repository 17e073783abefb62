// The QED image engine: reads, writes, zero writes, flush, resize and block status of one QED
// layer, safe under many concurrent requests. Composes the table cache, the per-cluster
// allocation locks, the file-growth gate and the NEED_CHECK lifecycle; backing files arrive
// already opened (see open.ts). Touches storage only through its BlockFile.
//
// Write ordering. Metadata is written back lazily (at flush, under cache pressure, when idle
// and on close); data goes straight to freshly allocated clusters at the end of the file.
// The invariants that make every crash recoverable, cited in the code as [I1]..[I5]:
//
//   [I1] An entry is linked (in memory) only after its cluster's data write completed, so a
//        read never sees a half-linked cluster and a writeback snapshot never names data
//        that was still in flight.
//   [I2] With a backing file, the data of every entry in a writeback snapshot is made
//        durable (flush) before the entries are written. Without it, a crash could leave an
//        entry pointing at a cluster that reads zeros where the old content was backing data.
//        Without a backing file the old content of a newly allocated cluster was zeros, which
//        is what an unwritten fresh cluster reads, so the flush is not needed.
//   [I3] NEED_CHECK is set and flushed before the first table write that a crash could leave
//        half done, and cleared only after a flush once no dirty metadata remains. A crash
//        between can leave entries pointing past the end of the file (their data never
//        landed), or a new L1 link to an L2 table that never landed; the check on the next
//        read-write open clears those entries, restoring the old content.
//   [I4] Clusters are allocated only from fresh space: at or past the file end rounded up
//        to a cluster at open. Fresh space reads zeros, which lets a partial write into a
//        new cluster without a backing file skip writing the zeros around it. Space freed
//        by a repair's truncate is reused only after that truncate was flushed (the repair
//        flushes before the engine opens).
//   [I5] After a failed metadata write or flush the image is poisoned: every later request
//        fails with the original error until it is reopened, because the in-memory tables
//        no longer say what is on disk.
import { QedError, UsageError, UnsupportedError, hex } from '../base/errors.js';
import { entryAt, putEntryAt } from '../base/bytes.js';
import { alignUp } from '../base/math.js';
import type { BlockFile } from '../io/block-file.js';
import { writeZerosAt } from '../io/zeros.js';
import { QED_F_NEED_CHECK, QED_UNALLOCATED, QED_ZERO_CLUSTER, SECTOR_SIZE } from '../format/constants.js';
import { Geometry } from '../format/geometry.js';
import { type QedHeader, encodeHeader } from '../format/header.js';
import { isValidClusterOffset, isValidTableOffset } from '../format/table.js';
import { checkRequest, type BlockDevice, type LayerExtent, type WriteZeroesOptions } from './device.js';
import { writeWithOldContentAround } from './copy-on-write.js';
import { Gate } from './gate.js';
import { KeyedLocks, Mutex } from './mutex.js';
import { ENTRIES_PER_CHUNK, TABLE_CHUNK_BYTES, TableCache } from './table-cache.js';

export const DEFAULT_CACHE_BYTES = 32 * 1024 * 1024;
export const DEFAULT_IDLE_FLUSH_MS = 5000;

export interface QedImageOptions {
  readOnly: boolean;
  backing: BlockDevice | null;
  backingName: string | null;
  backingFormat: 'qed' | 'raw' | null;
  /** Bound on cached table bytes (L1 and L2 chunks together). */
  cacheBytes?: number;
  /** Quiet time after which dirty metadata is written back and NEED_CHECK cleared (QEMU: 5 s). */
  idleFlushMs?: number;
}

type Run = { kind: 'unallocated' | 'zero'; guestOffset: number; length: number };

export class QedImage implements BlockDevice {
  readonly format = 'qed' as const;
  readonly geometry: Geometry;
  readonly readOnly: boolean;
  readonly backing: BlockDevice | null;
  readonly backingName: string | null;
  readonly backingFormat: 'qed' | 'raw' | null;
  readonly cache: TableCache;

  private header: QedHeader;
  /** Next free byte for allocation: always a cluster boundary [I4]. */
  private allocEnd: number;
  /** How far the file really reaches, as far as this process made it so. */
  private fileEnd: number;
  private needCheckOnDisk: boolean;
  private readonly clusterLocks = new KeyedLocks();
  private readonly growthGate = new Gate();
  private readonly writebackMutex = new Mutex();
  private allocationsInFlight = 0;
  private poisoned: unknown = null;
  private closed = false;
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly idleFlushMs: number;
  /**
   * A dirty image opened read-only cannot be repaired, but must still read as it will after
   * repair: entries the check would clear (past the end of the file, misaligned) read as
   * unallocated instead of failing.
   */
  private readonly readAsRepaired: boolean;
  /** The file's end when opened: entries on disk beyond it were not written by us. */
  private readonly openEnd: number;
  /**
   * Positions of entries found on disk pointing at or past openEnd. They stay invalid for
   * the life of the image, even once allocations make the file reach that far: otherwise a
   * stale or hostile entry would come to alias a cluster this process allocated.
   */
  private readonly suspectEntries = new Set<number>();
  private readonly scannedChunks = new Set<number>();
  private pressureWriteback: Promise<void> | null = null;

  constructor(readonly file: BlockFile, header: QedHeader, fileSize: number, options: QedImageOptions) {
    this.header = { ...header };
    this.geometry = new Geometry(header.clusterSize, header.tableSize, header.headerSize);
    this.readOnly = options.readOnly;
    this.backing = options.backing;
    this.backingName = options.backingName;
    this.backingFormat = options.backingFormat;
    this.allocEnd = alignUp(fileSize, header.clusterSize);
    this.fileEnd = fileSize;
    this.needCheckOnDisk = (header.features & QED_F_NEED_CHECK) !== 0n;
    this.readAsRepaired = this.readOnly && this.needCheckOnDisk;
    this.idleFlushMs = options.idleFlushMs ?? DEFAULT_IDLE_FLUSH_MS;
    this.openEnd = this.allocEnd;
    this.cache = new TableCache(
      (hostOffset, into) => this.loadTableChunk(hostOffset, into),
      Math.max(options.cacheBytes ?? DEFAULT_CACHE_BYTES, 4 * TABLE_CHUNK_BYTES),
    );
    this.cache.onPressure = () => {
      if (this.pressureWriteback) return;
      this.pressureWriteback = this.writeBack(false)
        .catch(() => { /* poisoned; reported on next request */ })
        .finally(() => { this.pressureWriteback = null; });
    };
  }

  get path(): string { return this.file.path; }
  get size(): number { return this.header.imageSize; }
  get clusterSize(): number { return this.header.clusterSize; }

  /** Clear unknown autoclear bits on a read-write open, as the spec asks. */
  async clearAutoclearFeatures(): Promise<void> {
    if (this.readOnly || this.header.autoclearFeatures === 0n) return;
    this.header.autoclearFeatures = 0n;
    await this.writeHeaderFields();
    await this.file.flush();
  }

  // ---- lookup -------------------------------------------------------------------------

  /** Read a table chunk; on its first load from the original file, note entries that reach past openEnd. */
  private async loadTableChunk(hostOffset: number, into: Uint8Array): Promise<void> {
    await this.file.read(into, hostOffset);
    if (hostOffset >= this.openEnd || this.scannedChunks.has(hostOffset)) return;
    this.scannedChunks.add(hostOffset);
    const view = new DataView(into.buffer, into.byteOffset, into.byteLength);
    for (let i = 0; i < ENTRIES_PER_CHUNK; i++) {
      const entry = entryAt(view, i);
      if (entry !== QED_UNALLOCATED && entry !== QED_ZERO_CLUSTER && entry >= this.openEnd) this.suspectEntries.add(hostOffset + i * 8);
    }
  }

  /**
   * The plan for a guest range: merged runs of data (with host offset), zero and unallocated
   * clusters, never crossing an L2 table boundary. Read, write, block status and every
   * operation above consume it (QEMU's qed_find_cluster).
   */
  async blockStatus(offset: number, length: number): Promise<LayerExtent[]> {
    this.checkUsable();
    checkRequest(this, offset, length, false);
    return this.mapRange(offset, length);
  }

  private async mapRange(offset: number, length: number): Promise<LayerExtent[]> {
    const extents: LayerExtent[] = [];
    const end = offset + length;
    for (let pos = offset; pos < end;) {
      const tableEnd = Math.min(end, this.geometry.l2CoverageEnd(pos));
      const l2Offset = await this.readL1Entry(this.geometry.l1Index(pos));
      if (l2Offset === QED_UNALLOCATED) {
        extents.push({ kind: 'unallocated', guestOffset: pos, length: tableEnd - pos });
      } else {
        await this.mapWithinTable(l2Offset, pos, tableEnd, extents);
      }
      pos = tableEnd;
    }
    return extents;
  }

  private async mapWithinTable(l2Offset: number, start: number, end: number, out: LayerExtent[]): Promise<void> {
    const cs = this.geometry.clusterSize;
    const firstOut = out.length;
    for (let pos = start; pos < end;) {
      const l2Index = this.geometry.l2Index(pos);
      const chunkOffset = l2Offset + Math.floor(l2Index / ENTRIES_PER_CHUNK) * TABLE_CHUNK_BYTES;
      const chunk = await this.cache.acquire(chunkOffset);
      try {
        for (let i = l2Index % ENTRIES_PER_CHUNK; i < ENTRIES_PER_CHUNK && pos < end; i++) {
          const entry = entryAt(chunk.view, i);
          const next = Math.min(end, this.geometry.clusterStart(pos) + cs);
          const inCluster = pos % cs;
          let extent: LayerExtent;
          if (entry === QED_UNALLOCATED) extent = { kind: 'unallocated', guestOffset: pos, length: next - pos };
          else if (entry === QED_ZERO_CLUSTER) extent = { kind: 'zero', guestOffset: pos, length: next - pos };
          else if (!this.isUsableDataOffset(entry, chunkOffset + i * 8)) {
            extent = { kind: 'unallocated', guestOffset: pos, length: next - pos };
          } else {
            extent = { kind: 'data', guestOffset: pos, length: next - pos, hostOffset: entry + inCluster };
          }
          appendMerged(out, extent, firstOut);
          pos = next;
        }
      } finally {
        this.cache.release(chunk);
      }
    }
  }

  private l1ChunkOffset(l1Index: number): number {
    return this.header.l1TableOffset + Math.floor(l1Index / ENTRIES_PER_CHUNK) * TABLE_CHUNK_BYTES;
  }

  private async readL1Entry(l1Index: number): Promise<number> {
    const chunkOffset = this.l1ChunkOffset(l1Index);
    const chunk = await this.cache.acquire(chunkOffset);
    try {
      const entry = entryAt(chunk.view, l1Index % ENTRIES_PER_CHUNK);
      if (entry === QED_UNALLOCATED) return entry;
      return this.isUsableTableOffset(entry, chunkOffset + (l1Index % ENTRIES_PER_CHUNK) * 8) ? entry : QED_UNALLOCATED;
    } finally {
      this.cache.release(chunk);
    }
  }

  /** A data entry we may follow; an invalid one fails the request (or reads as unallocated, see readAsRepaired). */
  private isUsableDataOffset(entry: number, entryAtHost: number): boolean {
    if (!this.suspectEntries.has(entryAtHost)
      && isValidClusterOffset(entry, this.geometry.clusterSize, this.geometry.headerBytes, this.allocEnd)
      && !this.overlapsL1(entry, this.geometry.clusterSize)) return true;
    if (this.readAsRepaired) return false;
    throw new QedError('FORMAT', `L2 entry at ${hex(entryAtHost)} holds invalid cluster offset ${hex(entry)}`, { path: this.path, offset: entryAtHost });
  }

  private isUsableTableOffset(entry: number, entryAtHost: number): boolean {
    if (!this.suspectEntries.has(entryAtHost)
      && isValidTableOffset(entry, this.geometry.tableBytes, this.geometry.clusterSize, this.geometry.headerBytes, this.allocEnd)
      && !this.overlapsL1(entry, this.geometry.tableBytes)) return true;
    if (this.readAsRepaired) return false;
    throw new QedError('FORMAT', `L1 entry at ${hex(entryAtHost)} holds invalid L2 table offset ${hex(entry)}`, { path: this.path, offset: entryAtHost });
  }

  /** An entry aimed at the L1 table would let guest writes overwrite metadata. */
  private overlapsL1(offset: number, length: number): boolean {
    const l1 = this.header.l1TableOffset;
    return offset < l1 + this.geometry.tableBytes && l1 < offset + length;
  }

  // ---- read ---------------------------------------------------------------------------

  async read(buf: Uint8Array, offset: number): Promise<void> {
    this.checkUsable();
    checkRequest(this, offset, buf.length, false);
    const extents = await this.mapRange(offset, buf.length);
    await Promise.all(extents.map((e) => {
      const slice = buf.subarray(e.guestOffset - offset, e.guestOffset - offset + e.length);
      if (e.kind === 'data') return this.file.read(slice, e.hostOffset);
      if (e.kind === 'zero') { slice.fill(0); return undefined; }
      return this.readBacking(slice, e.guestOffset);
    }));
  }

  /** Unallocated content: the backing file's bytes, zeros past its end or without one. */
  private async readBacking(slice: Uint8Array, guestOffset: number): Promise<void> {
    const backing = this.backing;
    const present = backing ? Math.max(0, Math.min(slice.length, backing.size - guestOffset)) : 0;
    if (present > 0) await backing!.read(slice.subarray(0, present), guestOffset);
    slice.fill(0, present);
  }

  // ---- write --------------------------------------------------------------------------

  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.checkUsable();
    checkRequest(this, offset, buf.length, true);
    if (buf.length === 0) return;
    await this.writeRange(buf, offset);
  }

  private async writeRange(data: Uint8Array, offset: number): Promise<void> {
    const extents = await this.mapRange(offset, data.length);
    await Promise.all(extents.map((e) => {
      const slice = data.subarray(e.guestOffset - offset, e.guestOffset - offset + e.length);
      return e.kind === 'data' ? this.file.write(slice, e.hostOffset) : this.allocateAndWrite(slice, e.guestOffset);
    }));
  }

  /**
   * Write into clusters that have no data yet: lock them, allocate fresh space, write the data
   * with the old content around it, then link. Two writers of one cluster serialize on its
   * lock and the second finds it allocated; writers of different clusters run in parallel.
   */
  private async allocateAndWrite(data: Uint8Array, guestOffset: number): Promise<void> {
    const cs = this.geometry.clusterSize;
    const first = Math.floor(guestOffset / cs);
    const last = Math.floor((guestOffset + data.length - 1) / cs);
    const unlock = await this.clusterLocks.lockAll(range(first, last));
    let redo = false;
    try {
      this.checkUsable();
      const current = await this.mapRange(guestOffset, data.length);
      if (current.length !== 1 || current[0]!.kind === 'data') {
        redo = true; // someone allocated part of it while we waited; start over outside the locks
      } else {
        await this.allocateRun(data, guestOffset, current[0] as Run, first, last);
      }
    } finally {
      unlock();
    }
    if (redo) await this.writeRange(data, guestOffset);
  }

  private async allocateRun(data: Uint8Array, guestOffset: number, old: Run, first: number, last: number): Promise<void> {
    const cs = this.geometry.clusterSize;
    const count = last - first + 1;
    const runStart = first * cs;
    const runEnd = (last + 1) * cs;
    this.allocationsInFlight++;
    try {
      const l2Offset = await this.ensureL2Table(this.geometry.l1Index(guestOffset));
      const host = this.allocateClusters(count);
      const release = await this.growthGate.enterShared();
      try {
        if (old.kind === 'unallocated' && this.backing) {
          await writeWithOldContentAround(this.file, (slice, at) => this.readBacking(slice, at), this.geometry.clusterSize,
            { data, guestOffset, hostOffset: host, runStart, runEnd });
        } else {
          // [I4] fresh space already reads zeros: write only the new bytes.
          await this.file.write(data, host + (guestOffset - runStart));
        }
        this.noteFileEnd(host + (guestOffset - runStart) + data.length);
      } finally {
        release();
      }
      await this.setL2Entries(l2Offset, first, count, (i) => host + i * cs); // [I1] data written first
    } finally {
      this.allocationsInFlight--;
    }
    this.metadataChanged();
  }

  /** Reserve `count` contiguous clusters of fresh space [I4]. Synchronous: no two callers get the same. */
  private allocateClusters(count: number): number {
    const host = this.allocEnd;
    this.allocEnd += count * this.geometry.clusterSize;
    return host;
  }

  /** The L2 table for l1Index, allocating one in fresh space when the L1 entry is empty. */
  private async ensureL2Table(l1Index: number): Promise<number> {
    const chunk = await this.cache.acquire(this.l1ChunkOffset(l1Index));
    try {
      const index = l1Index % ENTRIES_PER_CHUNK;
      const existing = entryAt(chunk.view, index);
      if (existing !== QED_UNALLOCATED) return existing;
      // Fresh space reads as an empty table [I4]; nothing is written until writeback.
      const table = this.allocateClusters(this.geometry.tableSize);
      putEntryAt(chunk.view, index, table);
      this.cache.markDirty(chunk);
      return table;
    } finally {
      this.cache.release(chunk);
    }
  }

  private async setL2Entries(l2Offset: number, firstCluster: number, count: number, valueOf: (i: number) => number): Promise<void> {
    const perTable = this.geometry.entriesPerTable;
    for (let i = 0; i < count;) {
      const l2Index = (firstCluster + i) % perTable;
      const chunk = await this.cache.acquire(l2Offset + Math.floor(l2Index / ENTRIES_PER_CHUNK) * TABLE_CHUNK_BYTES);
      try {
        for (let k = l2Index % ENTRIES_PER_CHUNK; k < ENTRIES_PER_CHUNK && i < count; k++, i++) {
          putEntryAt(chunk.view, k, valueOf(i));
        }
        this.cache.markDirty(chunk);
      } finally {
        this.cache.release(chunk);
      }
    }
  }

  // ---- zeroes and discard ---------------------------------------------------------------

  /**
   * Whole clusters become zero clusters (entry 1) without writing data; allocated clusters are
   * overwritten with zeros in place (unlinking them would leak them: QED has no free list).
   * Partial clusters at the edges get zeros written, unless they already read as zeros.
   * `mayUnmap` permits deallocation but never requires it, so it changes nothing here.
   */
  async writeZeroes(offset: number, length: number, _options: WriteZeroesOptions = {}): Promise<void> {
    this.checkUsable();
    checkRequest(this, offset, length, true);
    if (length === 0) return;
    await this.zeroRange(offset, length, offset + length === this.size);
  }

  /** Zeros over [offset, offset+length); `toImageEnd` lets a partial last cluster count as whole. */
  private async zeroRange(offset: number, length: number, toImageEnd: boolean): Promise<void> {
    const cs = this.geometry.clusterSize;
    const end = offset + length;
    const alignedStart = Math.min(alignUp(offset, cs), end);
    const alignedEnd = Math.max(alignedStart, end - (end % cs === 0 || toImageEnd ? 0 : end % cs));
    const jobs: Promise<void>[] = [];
    if (offset < alignedStart) jobs.push(this.zeroPartial(offset, alignedStart - offset));
    if (alignedStart < alignedEnd) jobs.push(this.zeroWholeClusters(alignedStart, alignedEnd));
    if (alignedEnd < end) jobs.push(this.zeroPartial(alignedEnd, end - alignedEnd));
    await Promise.all(jobs);
  }

  private async zeroPartial(offset: number, length: number): Promise<void> {
    const extents = await this.mapRange(offset, length);
    await Promise.all(extents.map((e) => {
      if (e.kind === 'zero' || (e.kind === 'unallocated' && !this.backing)) return undefined;
      const zeros = new Uint8Array(e.length);
      return e.kind === 'data' ? this.file.write(zeros, e.hostOffset) : this.allocateAndWrite(zeros, e.guestOffset);
    }));
  }

  /** [start, end) is cluster-aligned, or ends at the image end. */
  private async zeroWholeClusters(start: number, end: number): Promise<void> {
    const cs = this.geometry.clusterSize;
    const first = Math.floor(start / cs);
    const last = Math.floor((end - 1) / cs);
    const unlock = await this.clusterLocks.lockAll(range(first, last));
    try {
      this.checkUsable();
      const extents = await this.mapRange(start, end - start);
      for (const e of extents) {
        if (e.kind === 'zero') continue;
        if (e.kind === 'data') {
          await writeZerosAt(this.file, e.hostOffset, e.length);
          continue;
        }
        this.allocationsInFlight++;
        try {
          const l2Offset = await this.ensureL2Table(this.geometry.l1Index(e.guestOffset));
          await this.setL2Entries(l2Offset, e.guestOffset / cs, Math.ceil(e.length / cs), () => QED_ZERO_CLUSTER);
        } finally {
          this.allocationsInFlight--;
        }
        this.metadataChanged();
      }
    } finally {
      unlock();
    }
  }

  /** QEMU's QED ignores discard; so do we, so that a read after discard is unchanged. */
  async discard(offset: number, length: number): Promise<void> {
    this.checkUsable();
    checkRequest(this, offset, length, true);
  }

  // ---- flush, writeback, NEED_CHECK ----------------------------------------------------

  async flush(): Promise<void> {
    this.checkUsable();
    if (this.readOnly) return;
    await this.writeBack(true);
    this.armIdleTimer();
  }

  /**
   * Write dirty table chunks back. `sync` makes everything durable (a flush); without it this
   * only relieves cache pressure.
   */
  private writeBack(sync: boolean): Promise<void> {
    return this.writebackMutex.run(async () => {
      this.checkUsable();
      try {
        const dirty = this.cache.dirtyChunks();
        if (dirty.length > 0) {
          const snapshot = dirty.map((chunk) => ({ chunk, generation: chunk.generation, bytes: chunk.bytes.slice() }));
          await this.syncDataBeforeLinks(); // [I2]
          await this.setNeedCheck(); // [I3]
          await this.growFileToAllocEnd();
          await Promise.all(snapshot.map((s) => this.file.write(s.bytes, s.chunk.hostOffset)));
          for (const s of snapshot) if (s.chunk.generation === s.generation) s.chunk.dirty = false;
        }
        if (sync) await this.file.flush();
      } catch (err) {
        this.poison(err);
        throw err;
      }
    });
  }

  /**
   * Keep the file a whole number of clusters long: QEMU rounds the file size down to a
   * cluster at open and allocates from there, so a short last cluster would be reused.
   */
  private async growFileToAllocEnd(): Promise<void> {
    if (this.fileEnd >= this.allocEnd) return;
    const release = await this.growthGate.enterExclusive();
    try {
      const target = this.allocEnd;
      if (this.fileEnd < target) {
        await this.file.truncate(target);
        this.fileEnd = target;
      }
    } finally {
      release();
    }
  }

  /** [I2] Data before the entries that point at it, where a backing file makes it matter. */
  protected async syncDataBeforeLinks(): Promise<void> {
    if (this.backing) await this.file.flush();
  }

  /** Write NEED_CHECK and flush it before any table write [I3]. Called under the writeback mutex. */
  protected async setNeedCheck(): Promise<void> {
    if (this.needCheckOnDisk) return;
    this.header.features |= QED_F_NEED_CHECK;
    await this.writeHeaderFields();
    await this.file.flush();
    this.needCheckOnDisk = true;
  }

  /** Clear NEED_CHECK once everything it protected is durable. Called under the writeback mutex. */
  private async clearNeedCheck(): Promise<void> {
    if (!this.needCheckOnDisk || this.cache.dirtyCount > 0) return;
    await this.file.flush();
    this.header.features &= ~QED_F_NEED_CHECK;
    await this.writeHeaderFields();
    await this.file.flush();
    this.needCheckOnDisk = false;
  }

  private writeHeaderFields(): Promise<void> {
    return this.file.write(encodeHeader(this.header), 0);
  }

  private metadataChanged(): void {
    this.armIdleTimer();
  }

  /** After a quiet spell, write metadata back and clear NEED_CHECK, as QEMU's need-check timer does. */
  private armIdleTimer(): void {
    if (this.readOnly || this.closed) return;
    if (this.idleTimer) { this.idleTimer.refresh(); return; }
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      this.quiesce().catch(() => { /* poisoned; reported on next request */ });
    }, this.idleFlushMs);
    this.idleTimer.unref();
  }

  /** Write everything back and clear NEED_CHECK if the image is quiet. */
  async quiesce(): Promise<void> {
    if (this.readOnly || this.closed || this.poisoned) return;
    if (this.allocationsInFlight > 0) { this.armIdleTimer(); return; }
    await this.writeBack(true);
    await this.writebackMutex.run(async () => {
      if (this.allocationsInFlight > 0 || this.cache.dirtyCount > 0) return;
      try { await this.clearNeedCheck(); } catch (err) { this.poison(err); throw err; }
    });
  }

  // ---- resize, close, state ------------------------------------------------------------

  async resize(newSize: number): Promise<void> {
    this.checkUsable();
    if (this.readOnly) checkRequest(this, 0, 0, true);
    if (!Number.isSafeInteger(newSize) || newSize < 0 || newSize % SECTOR_SIZE !== 0) {
      throw new UsageError(`new size ${newSize} is not a multiple of ${SECTOR_SIZE}`, { path: this.path });
    }
    if (newSize > this.geometry.capacity) {
      throw new UsageError(`new size ${newSize} exceeds the L1 capacity ${this.geometry.capacity} of this image`, { path: this.path });
    }
    if (newSize < this.size) throw new UnsupportedError('shrinking a QED image', { path: this.path });
    if (newSize === this.size) return;
    // New space must read as zeros, not as whatever a longer backing file holds there (QEMU
    // refuses such a grow). The zeros are made durable before the size changes, so a crash
    // leaves the old size with zero clusters past it: harmless.
    const backingEnd = Math.min(newSize, this.backing?.size ?? 0);
    if (backingEnd > this.size) {
      await this.zeroRange(this.size, backingEnd - this.size, backingEnd === newSize);
      await this.writeBack(true);
    }
    await this.writebackMutex.run(async () => {
      const previous = this.header.imageSize;
      this.header.imageSize = newSize;
      try {
        await this.writeHeaderFields();
        await this.file.flush();
      } catch (err) {
        this.header.imageSize = previous;
        this.poison(err);
        throw err;
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.idleTimer) { clearTimeout(this.idleTimer); this.idleTimer = null; }
    let failure: unknown = null;
    if (this.poisoned) {
      // [I5] What was acknowledged since the failure may not be on disk: say so.
      try { this.checkUsable(); } catch (err) { failure = err; }
    } else if (!this.readOnly) {
      try {
        await this.writeBack(true);
        await this.writebackMutex.run(() => this.clearNeedCheck());
      } catch (err) {
        failure = err;
      }
    }
    this.closed = true;
    this.cache.clear();
    try { await this.backing?.close(); } catch (err) { failure ??= err; }
    try { await this.file.close(); } catch (err) { failure ??= err; }
    if (failure) throw failure;
  }

  private poison(err: unknown): void {
    this.poisoned ??= err;
  }

  private checkUsable(): void {
    if (this.closed) throw new QedError('CLOSED', 'image is closed', { path: this.path });
    if (this.poisoned) {
      const cause = this.poisoned instanceof Error ? this.poisoned.message : String(this.poisoned);
      throw new QedError('POISONED', `image failed earlier and must be reopened: ${cause}`, { path: this.path, cause: this.poisoned });
    }
  }

  private noteFileEnd(end: number): void {
    if (end > this.fileEnd) this.fileEnd = end;
  }
}

function range(first: number, last: number): number[] {
  const out: number[] = [];
  for (let i = first; i <= last; i++) out.push(i);
  return out;
}

/** Append, merging with the previous run when kinds match and data is host-contiguous. */
function appendMerged(out: LayerExtent[], e: LayerExtent, firstMergeable: number): void {
  const prev = out.length > firstMergeable ? out[out.length - 1] : undefined;
  if (prev && prev.kind === e.kind && prev.guestOffset + prev.length === e.guestOffset
    && (e.kind !== 'data' || (prev as { hostOffset: number }).hostOffset + prev.length === e.hostOffset)) {
    prev.length += e.length;
    return;
  }
  out.push(e);
}
