// One QED layer as a block device (QEMU's qed.c): composes cluster lookup (qed-lookup.ts),
// table edits (qed-tables.ts), the allocator, writes (qed-write.ts), write-zeroes
// (qed-zero.ts) and metadata write-back with the NEED_CHECK lifecycle (qed-writeback.ts);
// the request lifecycle and the checks every device shares live in checked-device.ts
// ([L1]..[L4]). Backing files arrive already opened (see open.ts). Touches storage only
// through its BlockFile and time only through its Scheduler.
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
import { UnsupportedError, UsageError } from '../base/errors.js';
import { alignUp } from '../base/math.js';
import type { BlockFile } from '../io/block-file.js';
import { QED_F_NEED_CHECK, SECTOR_SIZE } from '../format/constants.js';
import { Geometry } from '../format/geometry.js';
import type { QedHeader } from '../format/header.js';
import { CheckedDevice } from './checked-device.js';
import { MAX_REQUEST_BYTES, settleAll, type BlockDevice, type DeviceCapabilities, type DeviceDescription, type LayerExtent, type WriteZeroesOptions } from './device.js';
import { ClusterAllocator } from './qed-allocator.js';
import type { QedContext } from './qed-context.js';
import { ClusterLookup, WorkMeter } from './qed-lookup.js';
import { MetadataWriteback } from './qed-writeback.js';
import { writeRange } from './qed-write.js';
import { zeroRange } from './qed-zero.js';
import { RangeLocks } from './range-locks.js';
import { defaultScheduler, type Scheduler } from './scheduler.js';
import { TABLE_CHUNK_BYTES, TableCache } from './table-cache.js';

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
  scheduler?: Scheduler;
  /** Read-only opens of a dirty image: entries the repair will clear, read as unallocated (ClusterLookup). */
  clearedByRepair?: ReadonlySet<number>;
}

export class QedImage extends CheckedDevice {
  readonly format = 'qed' as const;
  readonly geometry: Geometry;
  readonly readOnly: boolean;
  readonly backing: BlockDevice | null;
  readonly backingName: string | null;
  readonly backingFormat: 'qed' | 'raw' | null;
  readonly cache: TableCache;
  readonly capabilities: DeviceCapabilities;

  private readonly header: QedHeader;
  private readonly ctx: QedContext;
  private readonly writeback: MetadataWriteback;
  private readonly scheduler: Scheduler;
  private readonly idleFlushMs: number;
  private cancelIdleTimer: (() => void) | null = null;
  private lastMetadataChange = 0;

  constructor(readonly file: BlockFile, header: QedHeader, fileSize: number, options: QedImageOptions) {
    super();
    this.header = { ...header };
    this.geometry = new Geometry(header.clusterSize, header.tableSize, header.headerSize);
    this.readOnly = options.readOnly;
    this.backing = options.backing;
    this.backingName = options.backingName;
    this.backingFormat = options.backingFormat;
    this.scheduler = options.scheduler ?? defaultScheduler;
    this.idleFlushMs = options.idleFlushMs ?? DEFAULT_IDLE_FLUSH_MS;
    const cacheBytes = options.cacheBytes ?? DEFAULT_CACHE_BYTES;
    if (!Number.isSafeInteger(cacheBytes) || cacheBytes < 0) throw new UsageError(`cacheBytes must be a whole number of bytes, not ${cacheBytes}`, { path: file.path });
    const allocator = new ClusterAllocator(alignUp(fileSize, header.clusterSize), header.clusterSize);
    const lookup = new ClusterLookup({
      file, geometry: this.geometry, l1TableOffset: header.l1TableOffset, openEnd: allocator.end,
      readAsRepaired: this.readOnly && (header.features & QED_F_NEED_CHECK) !== 0n,
      clearedByRepair: options.clearedByRepair,
      allocatedEnd: () => allocator.end,
    });
    this.cache = new TableCache((hostOffset, into) => lookup.loadTableChunk(hostOffset, into), Math.max(cacheBytes, 4 * TABLE_CHUNK_BYTES));
    lookup.cache = this.cache;
    this.writeback = new MetadataWriteback(file, this.cache, this.header, allocator, fileSize, {
      syncDataBeforeLinks: () => this.syncDataBeforeLinks(),
      setNeedCheck: () => this.setNeedCheck(),
      poison: (err) => this.poison(err),
      checkNotPoisoned: () => this.checkNotPoisoned(),
    });
    this.ctx = {
      file, geometry: this.geometry, cache: this.cache, lookup, allocator,
      allocationLocks: new RangeLocks(), writeback: this.writeback, scheduler: this.scheduler,
      hasBacking: this.backing !== null,
      readBacking: (slice, at) => this.readBacking(slice, at),
      checkNotPoisoned: () => this.checkNotPoisoned(),
      metadataChanged: () => this.armIdleTimer(),
    };
    this.capabilities = {
      writable: !this.readOnly,
      nativeFua: false,
      fastZero: true,
      trim: false,
      multiConn: true,
      blockSizes: { minimum: 1, preferred: Math.min(header.clusterSize, MAX_REQUEST_BYTES), maximum: MAX_REQUEST_BYTES },
    };
  }

  get path(): string { return this.file.path; }

  protected override describeLayout(): Partial<DeviceDescription> {
    return {
      clusterSize: this.header.clusterSize, tableSize: this.header.tableSize,
      backingFile: this.backingName, backingFormat: this.backingFormat ?? this.backing?.format ?? null,
    };
  }
  get size(): number { return this.header.imageSize; }
  get clusterSize(): number { return this.header.clusterSize; }

  /** Clear unknown autoclear bits on a read-write open, as the spec asks. */
  async clearAutoclearFeatures(): Promise<void> {
    if (this.readOnly || this.header.autoclearFeatures === 0n) return;
    const previous = this.header.autoclearFeatures;
    await this.writeback.updateHeader((h) => { h.autoclearFeatures = 0n; }, (h) => { h.autoclearFeatures = previous; });
  }

  // ---- requests (validated and admitted by CheckedDevice) ---------------------------------

  /** Yields the event loop after every few table chunks examined (WorkMeter), so a status over a huge dense range does not hold it. */
  protected statusOf(offset: number, length: number): Promise<LayerExtent[]> {
    return this.ctx.lookup.mapRange(offset, length, this.workMeter());
  }

  protected statusUpTo(offset: number, length: number, maxRuns: number): Promise<LayerExtent[]> {
    return this.ctx.lookup.mapRuns(offset, length, maxRuns, this.workMeter());
  }

  private workMeter(): WorkMeter {
    return new WorkMeter(() => this.scheduler.yieldTurn());
  }

  protected readAt(buf: Uint8Array, offset: number): Promise<unknown> {
    return this.readDataAt(buf, offset) ?? this.readMapped(buf, offset);
  }

  /** Cached data clusters back to back in the file: one file call. */
  protected override readDataAt(buf: Uint8Array, offset: number): Promise<unknown> | undefined {
    const host = this.ctx.lookup.cachedDataRange(offset, buf.length);
    return host >= 0 ? this.file.read(buf, host) : undefined;
  }

  private async readMapped(buf: Uint8Array, offset: number): Promise<void> {
    const extents = await this.ctx.lookup.mapRange(offset, buf.length);
    if (extents.length === 1 && extents[0]!.kind === 'data') { await this.file.read(buf, extents[0]!.hostOffset); return; }
    await settleAll(extents.map((e) => { // [L2]
      const slice = buf.subarray(e.guestOffset - offset, e.guestOffset - offset + e.length);
      if (e.kind === 'data') return this.file.read(slice, e.hostOffset);
      if (e.kind === 'zero') { slice.fill(0); return undefined; }
      return this.readBacking(slice, e.guestOffset);
    }));
  }

  protected writeAt(buf: Uint8Array, offset: number): Promise<unknown> {
    return writeRange(this.ctx, buf, offset);
  }

  protected writeZeroesAt(offset: number, length: number, options: WriteZeroesOptions): Promise<void> {
    return zeroRange(this.ctx, offset, length, offset + length === this.size, options);
  }

  protected async flushAll(): Promise<void> {
    await this.writeback.writeBack(true);
    this.armIdleTimer();
  }

  /** Unallocated content: the backing file's bytes, zeros past its end or without one. */
  private async readBacking(slice: Uint8Array, guestOffset: number): Promise<void> {
    const backing = this.backing;
    const present = backing ? Math.max(0, Math.min(slice.length, backing.size - guestOffset)) : 0;
    if (present > 0) await backing!.read(slice.subarray(0, present), guestOffset);
    slice.fill(0, present);
  }

  // ---- ordering hooks (tests break them on purpose to prove the crash explorer can fail) ---

  /** [I2] Data before the entries that point at it, where a backing file makes it matter. */
  protected async syncDataBeforeLinks(): Promise<void> {
    if (this.backing) await this.file.flush();
  }

  /** [I3] NEED_CHECK set and durable before any table write. Called under the writeback mutex. */
  protected async setNeedCheck(): Promise<void> {
    await this.writeback.setNeedCheckNow();
  }

  // ---- idle writeback ---------------------------------------------------------------------

  /** After a quiet spell, write metadata back and clear NEED_CHECK, as QEMU's need-check timer does. */
  private armIdleTimer(): void {
    if (this.readOnly || this.isClosing) return;
    this.lastMetadataChange = this.scheduler.now();
    if (this.cancelIdleTimer) return;
    const fire = (): void => {
      const quietFor = this.scheduler.now() - this.lastMetadataChange;
      if (quietFor < this.idleFlushMs) {
        this.cancelIdleTimer = this.scheduler.delay(fire, this.idleFlushMs - quietFor);
        return;
      }
      this.cancelIdleTimer = null;
      this.quiesce().catch(() => { /* poisoned; reported on next request */ });
    };
    this.cancelIdleTimer = this.scheduler.delay(fire, this.idleFlushMs);
  }

  /** Write everything back and clear NEED_CHECK if the image is quiet. The idle timer's hook; promises nothing. */
  async quiesce(): Promise<void> {
    if (this.readOnly || this.isClosing || this.isPoisoned) return;
    if (this.writeback.allocationsInFlight > 0) { this.armIdleTimer(); return; }
    await this.writeback.writeBackAndClearNeedCheck();
  }

  // ---- resize, close ----------------------------------------------------------------------

  protected async resizeTo(newSize: number): Promise<void> {
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
      await zeroRange(this.ctx, this.size, backingEnd - this.size, backingEnd === newSize, {});
      await this.writeback.writeBack(true);
    }
    const previous = this.header.imageSize;
    await this.writeback.updateHeader((h) => { h.imageSize = newSize; }, (h) => { h.imageSize = previous; });
  }

  /** [L1] Runs after every admitted request settled: final writeback, then release the files. */
  protected async closeFiles(): Promise<void> {
    this.cancelIdleTimer?.();
    this.cancelIdleTimer = null;
    let failure: unknown = null;
    await this.writeback.idle();
    if (this.isPoisoned) {
      // [I5] What was acknowledged since the failure may not be on disk: say so.
      try { this.checkNotPoisoned(); } catch (err) { failure = err; }
    } else if (!this.readOnly) {
      try {
        await this.writeback.writeBackAndClearNeedCheck();
      } catch (err) {
        failure = err;
      }
    }
    this.cache.clear();
    try { await this.backing?.close(); } catch (err) { failure ??= err; }
    try { await this.file.close(); } catch (err) { failure ??= err; }
    if (failure) throw failure;
  }
}

