// The guest's side of a crash test: a recorder that calls the device and logs when each write,
// sync and resize was issued and acknowledged, on the clock the recording file shares.
import type { BlockDevice, WriteOptions, WriteZeroesOptions } from '../../src/engine/device.js';
import { QedImage } from '../../src/engine/qed-image.js';
import { EventClock, SECTOR } from './crash-file.js';

export interface GuestWrite {
  offset: number;
  length: number;
  /** null for a zero write. */
  data: Uint8Array | null;
  issued: number;
  /** Infinity until acknowledged; a rejected request is never acknowledged. */
  acked: number;
  /** Written with FUA: durable once acknowledged, whatever flushes follow. */
  fua?: boolean;
}
export interface GuestSync {
  issued: number;
  acked: number;
  /**
   * A close: it first lets every request admitted before it settle (checked-device.ts [L1]),
   * so once acknowledged it makes durable every write acknowledged before it, not only those
   * acknowledged before it was issued.
   */
  drains?: boolean;
}
export interface GuestResize { size: number; issued: number; acked: number }

export class GuestLog {
  readonly writes: GuestWrite[] = [];
  /** Flushes and closes: after one is acknowledged, what was acknowledged before it began is durable. */
  readonly syncs: GuestSync[] = [];
  readonly resizes: GuestResize[] = [];
}

/** Calls the device and logs each request's issue and acknowledgement on the shared clock. */
export class GuestRecorder {
  /** Pass the log of an earlier recorder to continue its history on a reopened device. */
  constructor(readonly device: BlockDevice, private readonly clock: EventClock, readonly log = new GuestLog()) {}

  get size(): number { return this.device.size; }

  async write(data: Uint8Array, offset: number, options?: WriteOptions): Promise<void> {
    checkSectorAligned(offset, data.length);
    const entry: GuestWrite = { offset, length: data.length, data: new Uint8Array(data), issued: this.clock.tick(), acked: Infinity };
    if (options?.fua) entry.fua = true;
    this.log.writes.push(entry);
    await this.device.write(data, offset, options);
    entry.acked = this.clock.tick();
  }

  async writeZeroes(offset: number, length: number, options?: WriteZeroesOptions): Promise<void> {
    checkSectorAligned(offset, length);
    const entry: GuestWrite = { offset, length, data: null, issued: this.clock.tick(), acked: Infinity };
    if (options?.fua) entry.fua = true;
    this.log.writes.push(entry);
    await this.device.writeZeroes(offset, length, options);
    entry.acked = this.clock.tick();
  }

  /** The device contract: content after a discard is unchanged, so it is not a write. */
  discard(offset: number, length: number): Promise<void> { return this.device.discard(offset, length); }

  flush(): Promise<void> { return this.sync(() => this.device.flush()); }
  close(): Promise<void> { return this.sync(() => this.device.close(), true); }

  async resize(size: number): Promise<void> {
    const entry: GuestResize = { size, issued: this.clock.tick(), acked: Infinity };
    this.log.resizes.push(entry);
    await this.device.resize(size);
    entry.acked = this.clock.tick();
  }

  /** Write back and clear NEED_CHECK as the idle timer would. Promises nothing, so not a sync. */
  async quiesce(): Promise<void> {
    if (this.device instanceof QedImage) await this.device.quiesce();
  }

  /**
   * A write sent some other way (an NBD client): logged on the same clock, acknowledged when
   * `send` resolves. `data` null is a zero write.
   */
  async writeVia(send: () => Promise<void>, offset: number, length: number, data: Uint8Array | null, fua = false): Promise<void> {
    checkSectorAligned(offset, length);
    const entry: GuestWrite = { offset, length, data: data === null ? null : new Uint8Array(data), issued: this.clock.tick(), acked: Infinity };
    if (fua) entry.fua = true;
    this.log.writes.push(entry);
    await send();
    entry.acked = this.clock.tick();
  }

  /** A flush sent some other way (an NBD client's FLUSH), logged as a sync. */
  flushVia(send: () => Promise<void>): Promise<void> { return this.sync(send); }

  private async sync(run: () => Promise<void>, drains = false): Promise<void> {
    const entry: GuestSync = { issued: this.clock.tick(), acked: Infinity };
    if (drains) entry.drains = true;
    this.log.syncs.push(entry);
    await run();
    entry.acked = this.clock.tick();
  }
}

/** The model works per sector; a sub-sector guest write would make "old or new" ambiguous. */
function checkSectorAligned(offset: number, length: number): void {
  if (offset % SECTOR !== 0 || length % SECTOR !== 0) throw new Error(`workload bug: ${offset}+${length} is not sector-aligned`);
}
