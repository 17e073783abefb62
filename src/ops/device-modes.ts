// A device seen through QEMU's per-open modes: the cache modes that decide when writes are
// durable (writethrough: each write is, as if FUA; unsafe: flushes are dropped) and
// copy-on-read (data read through from the backing chain is written into the top image, so
// later reads find it there). qemu-io's -t and -C.
import type { BlockDevice, ChainExtent, DeviceCapabilities, DeviceDescription, LayerExtent, WriteOptions, WriteZeroesOptions } from '../engine/device.js';
import type { ImageFormat } from '../format/probe.js';

export interface DeviceModes {
  /** Every write is durable when it completes (QEMU's cache=writethrough and directsync). */
  writeThrough?: boolean;
  /** Flush requests do nothing (QEMU's cache=unsafe). */
  dropFlushes?: boolean;
  /** Copy what reads fetch from the backing chain into this image (QEMU's copy-on-read). */
  copyOnRead?: boolean;
}

export class ModedDevice implements BlockDevice {
  /** The inner device's, where it has one: the chain walk takes big steps through this device too. */
  readonly layerStatusUpTo?: (offset: number, length: number, maxRuns: number) => Promise<LayerExtent[]>;

  /** The inner device's fast path of reads of plain data, where it has one. */
  readonly readIfData?: (buf: Uint8Array, offset: number) => Promise<void> | undefined;

  constructor(private readonly inner: BlockDevice, private readonly modes: DeviceModes) {
    if (inner.layerStatusUpTo) this.layerStatusUpTo = (offset, length, maxRuns) => inner.layerStatusUpTo!(offset, length, maxRuns);
    // Data of the top layer is never copied up, so copy-on-read changes nothing here.
    if (inner.readIfData) this.readIfData = (buf, offset) => inner.readIfData!(buf, offset);
  }

  get path(): string { return this.inner.path; }
  get format(): ImageFormat { return this.inner.format; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get size(): number { return this.inner.size; }
  get backing(): BlockDevice | null { return this.inner.backing; }
  get capabilities(): DeviceCapabilities { return this.inner.capabilities; }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    if (!this.modes.copyOnRead || this.inner.backing === null || buf.length === 0) return this.inner.read(buf, offset);
    // Which parts come from below is decided before the read, so a part this read copies up
    // is written with exactly the bytes the read returned.
    const fromBelow = (await this.inner.layerStatus(offset, buf.length)).filter((e) => e.kind === 'unallocated');
    await this.inner.read(buf, offset);
    for (const e of fromBelow) {
      const start = e.guestOffset - offset;
      await this.inner.write(buf.subarray(start, start + e.length), e.guestOffset);
    }
  }

  write(buf: Uint8Array, offset: number, options: WriteOptions = {}): Promise<void> {
    return this.inner.write(buf, offset, { ...options, fua: options.fua || this.modes.writeThrough });
  }

  writeZeroes(offset: number, length: number, options: WriteZeroesOptions = {}): Promise<void> {
    return this.inner.writeZeroes(offset, length, { ...options, fua: options.fua || this.modes.writeThrough });
  }

  discard(offset: number, length: number): Promise<void> { return this.inner.discard(offset, length); }

  async flush(): Promise<void> {
    if (!this.modes.dropFlushes) await this.inner.flush();
  }

  resize(newSize: number): Promise<void> { return this.inner.resize(newSize); }
  layerStatus(offset: number, length: number): Promise<LayerExtent[]> { return this.inner.layerStatus(offset, length); }
  blockStatus(start?: number, length?: number): AsyncGenerator<ChainExtent> { return this.inner.blockStatus(start, length); }
  describe(): DeviceDescription { return this.inner.describe(); }
  close(): Promise<void> { return this.inner.close(); }
  [Symbol.asyncDispose](): Promise<void> { return this.close(); }
}
