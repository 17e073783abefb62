// The request lifecycle and the checks every device shares, in one place (as nbdkit's
// backend.c): a request is validated, admitted, run, and counted until it settles; options a
// device lacks natively are emulated here (FUA as a flush after the write).
//
//   [L1] A request admitted before close() completes before close's final writeback, and
//        close() never discards dirty metadata: it writes it back or rejects.
//   [L2] A request settles only after all of its I/O has settled (settleAll).
//   [L3] After close() begins, new requests fail with SHUTDOWN; after it ends, with CLOSED.
//   [L4] After a failure that leaves memory and disk disagreeing (a failed metadata write or
//        any failed flush), every request fails with POISONED until the device is reopened.
import { ClosedError, PoisonedError, ShutdownError, UsageError } from '../base/errors.js';
import { chainBlockStatus } from './chain-status.js';
import { checkRequest, type BlockDevice, type ChainExtent, type DeviceCapabilities, type DeviceDescription, type LayerExtent, type WriteOptions, type WriteZeroesOptions } from './device.js';
import type { ImageFormat } from '../format/probe.js';

type State = 'open' | 'closing' | 'closed';

export abstract class CheckedDevice implements BlockDevice {
  abstract readonly format: ImageFormat;
  abstract readonly readOnly: boolean;
  abstract readonly size: number;
  abstract readonly path: string;
  abstract readonly backing: BlockDevice | null;
  abstract readonly capabilities: DeviceCapabilities;

  private state: State = 'open';
  private admitted = 0;
  private drained: (() => void) | null = null;
  private closing: Promise<void> | null = null;
  private poisonCause: unknown = null;

  protected abstract readAt(buf: Uint8Array, offset: number): Promise<unknown>;
  protected abstract writeAt(buf: Uint8Array, offset: number): Promise<unknown>;
  protected abstract writeZeroesAt(offset: number, length: number, options: WriteZeroesOptions): Promise<void>;
  protected abstract flushAll(): Promise<void>;
  protected abstract resizeTo(newSize: number): Promise<void>;
  protected abstract statusOf(offset: number, length: number): Promise<LayerExtent[]>;
  /** Runs from offset as far as maxRuns reach (at least one); see BlockDevice.layerStatusUpTo. */
  protected abstract statusUpTo(offset: number, length: number, maxRuns: number): Promise<LayerExtent[]>;
  /** Final writeback and release of files; runs once, after every admitted request settled. */
  protected abstract closeFiles(): Promise<void>;

  // read and write are the hot path: admitted inline, without admit's closure.
  async read(buf: Uint8Array, offset: number): Promise<void> {
    if (!(buf instanceof Uint8Array)) return this.refuseBuffer(buf);
    this.enter(offset, buf.length, false);
    try {
      await this.readAt(buf, offset);
    } finally {
      this.leave();
    }
  }

  /** See BlockDevice.readIfData: anything unusual (closing, poisoned, out of range) is left to read, which reports it. */
  readIfData(buf: Uint8Array, offset: number): Promise<void> | undefined {
    if (!(buf instanceof Uint8Array) || buf.length === 0) return undefined;
    try {
      this.enter(offset, buf.length, false);
    } catch {
      return undefined;
    }
    let reading: Promise<unknown> | undefined;
    try {
      reading = this.readDataAt(buf, offset);
    } catch (err) {
      this.leave();
      throw err;
    }
    if (reading === undefined) { this.leave(); return undefined; }
    return reading.then(() => { this.leave(); }, (err: unknown) => { this.leave(); throw err; }); // [L2]
  }

  /** The device's part of readIfData: the read, started, when the range is known to be all data; undefined otherwise. */
  protected readDataAt(_buf: Uint8Array, _offset: number): Promise<unknown> | undefined { return undefined; }

  async write(buf: Uint8Array, offset: number, options?: WriteOptions): Promise<void> {
    if (!(buf instanceof Uint8Array)) return this.refuseBuffer(buf);
    this.enter(offset, buf.length, true);
    try {
      if (buf.length > 0) await this.writeAt(buf, offset);
      if (options?.fua) await this.flushAll();
    } finally {
      this.leave();
    }
  }

  writeZeroes(offset: number, length: number, options: WriteZeroesOptions = {}): Promise<void> {
    return this.admit(offset, length, true, async () => {
      if (length > 0) await this.writeZeroesAt(offset, length, options);
      if (options.fua) await this.flushAll();
    });
  }

  /** Advisory, and neither QED nor raw gives space back: validated, then nothing changes. */
  discard(offset: number, length: number): Promise<void> {
    return this.admit(offset, length, true, async () => undefined);
  }

  flush(): Promise<void> {
    return this.admit(0, 0, false, () => (this.readOnly ? Promise.resolve() : this.flushAll()));
  }

  resize(newSize: number): Promise<void> {
    return this.admit(0, 0, true, () => this.resizeTo(newSize));
  }

  layerStatus(offset: number, length: number): Promise<LayerExtent[]> {
    return this.admit(offset, length, false, () => this.statusOf(offset, length));
  }

  layerStatusUpTo(offset: number, length: number, maxRuns: number): Promise<LayerExtent[]> {
    if (!Number.isSafeInteger(maxRuns) || maxRuns < 1) return Promise.reject(new UsageError(`maxRuns must be a whole number of at least 1, not ${maxRuns}`, { path: this.path }));
    return this.admit(offset, length, false, () => (length === 0 ? Promise.resolve([]) : this.statusUpTo(offset, length, maxRuns)));
  }

  blockStatus(start = 0, length = this.size - start): AsyncGenerator<ChainExtent> {
    return chainBlockStatus(this, start, length);
  }

  describe(): DeviceDescription {
    let chainDepth = 0;
    for (let layer = this.backing; layer !== null; layer = layer.backing) chainDepth++;
    return {
      path: this.path, format: this.format, size: this.size, readOnly: this.readOnly,
      backingFile: null, backingFormat: this.backing?.format ?? null, chainDepth, ...this.describeLayout(),
    };
  }

  /** Format-specific parts of describe(). */
  protected describeLayout(): Partial<DeviceDescription> { return {}; }

  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private async closeOnce(): Promise<void> {
    this.state = 'closing';
    if (this.admitted > 0) await new Promise<void>((resolve) => { this.drained = resolve; }); // [L1]
    try {
      await this.closeFiles();
    } finally {
      this.state = 'closed';
    }
  }

  /** True once close() has begun: background work should stop starting. */
  protected get isClosing(): boolean { return this.state !== 'open'; }

  protected get isPoisoned(): boolean { return this.poisonCause !== null; }

  /** [L4] Remember the first failure that made memory and disk disagree. */
  protected poison(err: unknown): void {
    this.poisonCause ??= err;
  }

  private refuseBuffer(buf: unknown): Promise<never> {
    const what = Array.isArray(buf) ? 'an array' : buf === null ? 'null' : typeof buf;
    return Promise.reject(new UsageError(`the buffer must be a Uint8Array (or Buffer), not ${what}`, { path: this.path }));
  }

  /** Throws if the device cannot take requests: closing, closed or poisoned. */
  private checkUsable(): void {
    if (this.state === 'closed') throw new ClosedError('image is closed', { path: this.path });
    if (this.state === 'closing') throw new ShutdownError('image is closing', { path: this.path });
    this.checkNotPoisoned();
  }

  protected checkNotPoisoned(): void {
    if (this.poisonCause === null) return;
    const cause = this.poisonCause instanceof Error ? this.poisonCause.message : String(this.poisonCause);
    throw new PoisonedError(`image failed earlier and must be reopened: ${cause}`, { path: this.path, cause: this.poisonCause });
  }

  private async admit<T>(offset: number, length: number, write: boolean, run: () => Promise<T>): Promise<T> {
    this.enter(offset, length, write);
    try {
      return await run();
    } finally {
      this.leave();
    }
  }

  /** Validate and count a request; every enter is paired with one leave once its I/O settled [L2]. */
  private enter(offset: number, length: number, write: boolean): void {
    this.checkUsable(); // [L3]
    checkRequest(this, offset, length, write);
    this.admitted++;
  }

  private leave(): void {
    if (--this.admitted === 0 && this.drained) { const wake = this.drained; this.drained = null; wake(); } // [L1]
  }
}
