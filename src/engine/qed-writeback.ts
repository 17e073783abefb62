// Metadata write-back and the NEED_CHECK lifecycle (QEMU's qed.c need-check timer and
// qed_write_header). Dirty table chunks go to disk at flush, under cache pressure, when the
// image is quiet and at close; before any table write NEED_CHECK is set and durable [I3],
// and with a backing file the data the entries name is durable first [I2]. Also owns the
// file's growth: the truncate that keeps the file a whole number of clusters long.
import type { BlockFile } from '../io/block-file.js';
import { QED_F_NEED_CHECK } from '../format/constants.js';
import { type QedHeader, encodeHeader } from '../format/header.js';
import { Gate } from './gate.js';
import { Mutex } from './mutex.js';
import type { ClusterAllocator } from './qed-allocator.js';
import type { TableCache } from './table-cache.js';

export interface WritebackHooks {
  /** [I2] Make data durable before entries that point at it are written. */
  syncDataBeforeLinks(): Promise<void>;
  /** [I3] Set NEED_CHECK and make it durable. */
  setNeedCheck(): Promise<void>;
  /** [I5] Called with the failure of any metadata write or flush. */
  poison(err: unknown): void;
  /** Throws when the image is poisoned. */
  checkNotPoisoned(): void;
}

export class MetadataWriteback {
  /** Exclusive: one writeback, header write or NEED_CHECK change at a time. */
  readonly mutex = new Mutex();
  /** Allocating data writes hold it shared; growing the file holds it exclusively (see gate.ts). */
  readonly growthGate = new Gate();
  /** Allocating writes between reserving clusters and linking them: NEED_CHECK must stay set. */
  allocationsInFlight = 0;
  private needCheckOnDisk: boolean;
  /** How far the file really reaches, as far as this process made it so. */
  private fileEnd: number;
  private pressureRelief: Promise<void> | null = null;

  constructor(
    private readonly file: BlockFile,
    private readonly cache: TableCache,
    private readonly header: QedHeader,
    private readonly allocator: ClusterAllocator,
    fileSize: number,
    private readonly hooks: WritebackHooks,
  ) {
    this.needCheckOnDisk = (header.features & QED_F_NEED_CHECK) !== 0n;
    this.fileEnd = fileSize;
    cache.onPressure = () => { void this.relievePressure(); };
  }

  noteFileEnd(end: number): void {
    if (end > this.fileEnd) this.fileEnd = end;
  }

  /**
   * Write dirty chunks back without a flush, once at a time, when dirty chunks hold the cache
   * over its bound. Long requests await it between steps, so dirty metadata stays bounded.
   */
  relievePressure(): Promise<void> {
    if (!this.cache.overCapacity) return Promise.resolve();
    this.pressureRelief ??= this.writeBack(false)
      .catch(() => { /* poisoned; the next request reports it */ })
      .finally(() => { this.pressureRelief = null; });
    return this.pressureRelief;
  }

  /** Settles when no pressure writeback is running. */
  async idle(): Promise<void> {
    while (this.pressureRelief) await this.pressureRelief;
  }

  /** Write dirty table chunks back; `sync` also makes everything durable (a flush). */
  writeBack(sync: boolean): Promise<void> {
    return this.mutex.run(async () => {
      this.hooks.checkNotPoisoned();
      try {
        const dirty = this.cache.dirtyChunks();
        if (dirty.length > 0) {
          const snapshot = dirty.map((chunk) => ({ chunk, generation: chunk.generation, bytes: chunk.bytes.slice() }));
          await this.hooks.syncDataBeforeLinks(); // [I2]
          await this.hooks.setNeedCheck(); // [I3]
          await this.growFileToAllocatedEnd();
          const writes = await Promise.allSettled(snapshot.map((s) => this.file.write(s.bytes, s.chunk.hostOffset)));
          for (const w of writes) if (w.status === 'rejected') throw w.reason;
          for (const s of snapshot) if (s.chunk.generation === s.generation) s.chunk.dirty = false;
        }
        if (sync) await this.file.flush();
      } catch (err) {
        this.hooks.poison(err);
        throw err;
      }
    });
  }

  /** Write NEED_CHECK and flush it before any table write [I3]. Called under the mutex. */
  async setNeedCheckNow(): Promise<void> {
    if (this.needCheckOnDisk) return;
    this.header.features |= QED_F_NEED_CHECK;
    await this.writeHeader();
    await this.file.flush();
    this.needCheckOnDisk = true;
  }

  /** Write back, then clear NEED_CHECK if nothing is dirty and no allocation is between reserve and link. */
  async writeBackAndClearNeedCheck(): Promise<void> {
    await this.writeBack(true);
    await this.mutex.run(async () => {
      // [I5] A flush that failed after ours (a guest flush queued between the two sections)
      // proves nothing about the tables: never declare the image clean after it.
      this.hooks.checkNotPoisoned();
      if (this.allocationsInFlight > 0 || this.cache.dirtyCount > 0 || !this.needCheckOnDisk) return;
      try {
        await this.file.flush();
        this.header.features &= ~QED_F_NEED_CHECK;
        await this.writeHeader();
        await this.file.flush();
        this.needCheckOnDisk = false;
      } catch (err) {
        this.hooks.poison(err);
        throw err;
      }
    });
  }

  /** Header fields changed by the owner (size, autoclear bits), written and flushed under the mutex. */
  updateHeader(change: (header: QedHeader) => void, undo: (header: QedHeader) => void): Promise<void> {
    return this.mutex.run(async () => {
      this.hooks.checkNotPoisoned();
      change(this.header);
      try {
        await this.writeHeader();
        await this.file.flush();
      } catch (err) {
        undo(this.header);
        this.hooks.poison(err);
        throw err;
      }
    });
  }

  private writeHeader(): Promise<void> {
    return this.file.write(encodeHeader(this.header), 0);
  }

  /**
   * Keep the file a whole number of clusters long: QEMU rounds the file size down to a
   * cluster at open and allocates from there, so a short last cluster would be reused.
   */
  private async growFileToAllocatedEnd(): Promise<void> {
    if (this.fileEnd >= this.allocator.end) return;
    const release = await this.growthGate.enterExclusive();
    try {
      const target = this.allocator.end;
      if (this.fileEnd < target) {
        await this.file.truncate(target);
        this.fileEnd = target;
      }
    } finally {
      release();
    }
  }
}
