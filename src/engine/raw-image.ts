// A raw image: guest offset = file offset. Used as a backing file and for raw conversions.
import type { BlockFile } from '../io/block-file.js';
import { CheckedDevice } from './checked-device.js';
import { MAX_REQUEST_BYTES, type DeviceCapabilities, type LayerExtent, type WriteZeroesOptions } from './device.js';
import { writeZerosAt } from '../io/zeros.js';
import { FastZeroError, hex } from '../base/errors.js';
import { alignUp } from '../base/math.js';
import { SECTOR_SIZE } from '../format/constants.js';
import { appendWithin } from './layer-runs.js';

/** The first window of statusUpTo: the chain walk's old fixed step. */
const FIRST_STATUS_WINDOW = 256 * 1024 * 1024;

export class RawImage extends CheckedDevice {
  readonly format = 'raw' as const;
  readonly backing = null;
  readonly capabilities: DeviceCapabilities;

  /** `fileLength` is the bytes really in the file; the guest size is rounded up to a sector. */
  constructor(readonly file: BlockFile, private fileLength: number) {
    super();
    this.capabilities = {
      writable: !file.readOnly,
      nativeFua: false,
      // Zeroing a raw file means writing zeros (the BlockFile seam has no hole punching).
      fastZero: false,
      trim: false,
      multiConn: true,
      blockSizes: { minimum: 1, preferred: 4096, maximum: MAX_REQUEST_BYTES },
    };
  }

  /** Like QEMU, the size is the file length rounded up to a sector; the padding reads as zeros. */
  static async open(file: BlockFile): Promise<RawImage> {
    return new RawImage(file, await file.size());
  }

  get path(): string { return this.file.path; }
  get readOnly(): boolean { return this.file.readOnly; }
  get size(): number { return alignUp(this.fileLength, SECTOR_SIZE); }

  protected async readAt(buf: Uint8Array, offset: number): Promise<void> {
    await this.file.read(buf, offset);
  }

  protected async writeAt(buf: Uint8Array, offset: number): Promise<void> {
    await this.file.write(buf, offset);
    this.fileLength = Math.max(this.fileLength, offset + buf.length);
  }

  protected async writeZeroesAt(offset: number, length: number, options: WriteZeroesOptions): Promise<void> {
    if (options.fastZero) throw new FastZeroError(`zeroing ${hex(offset)}+${hex(length)} of a raw file means writing zeros`, { path: this.path, guestOffset: offset });
    await writeZerosAt(this.file, offset, length);
    this.fileLength = Math.max(this.fileLength, offset + length);
  }

  /** [L4] A failed fdatasync may be reported as success next time (the page cache dropped the data): poison. */
  protected async flushAll(): Promise<void> {
    try {
      await this.file.flush();
    } catch (err) {
      this.poison(err);
      throw err;
    }
  }

  protected async resizeTo(newSize: number): Promise<void> {
    await this.file.truncate(newSize);
    this.fileLength = newSize;
  }

  /**
   * A raw file is data at the same offset, except its holes (where the file can tell) and the
   * padding past its end up to the next sector, which read as zeros (what QEMU's file layer
   * reports too). With `maxRuns` (statusUpTo) the runs may stop short of offset+length,
   * where the file's own ran out (findData's bound); without it they cover the whole range.
   */
  protected async statusOf(offset: number, length: number, maxRuns?: number): Promise<LayerExtent[]> {
    const end = offset + length;
    const dataEnd = Math.min(end, Math.max(offset, this.fileLength));
    const extents: LayerExtent[] = [];
    if (dataEnd > offset) {
      // Holes of a sparse file read as zeros (qemu-img map says zero, not data); a file that
      // cannot tell is all data.
      const runs = await this.file.findData?.(offset, dataEnd - offset, maxRuns) ?? null;
      if (runs === null) extents.push({ kind: 'data', guestOffset: offset, length: dataEnd - offset, hostOffset: offset });
      else for (const r of runs) extents.push({ kind: r.data ? 'data' : 'zero', guestOffset: r.offset, length: r.length, hostOffset: r.offset });
      const last = extents[extents.length - 1];
      if (last && last.guestOffset + last.length < dataEnd) return extents;
    }
    if (end > dataEnd) extents.push({ kind: 'zero', guestOffset: dataEnd, length: end - dataEnd, hostOffset: dataEnd });
    return extents;
  }

  /**
   * Windows that double while the file stays sparse, so a 64 TiB file of holes costs a few
   * seeks; the file is asked for no more runs than are still wanted, and runs past maxRuns
   * are dropped (the caller asks again from where the kept ones end).
   */
  protected async statusUpTo(offset: number, length: number, maxRuns: number): Promise<LayerExtent[]> {
    const end = offset + length;
    const out: LayerExtent[] = [];
    for (let pos = offset, window = FIRST_STATUS_WINDOW; pos < end; window *= 2) {
      const stop = Math.min(end, pos + window);
      // One more than the room left: the first may merge into the last run kept.
      const extents = await this.statusOf(pos, stop - pos, maxRuns - out.length + 1);
      for (const e of extents) {
        if (!appendWithin(out, e, 0, maxRuns)) return out;
      }
      const last = extents[extents.length - 1];
      if (!last || last.guestOffset + last.length < stop) return out;
      pos = stop;
    }
    return out;
  }

  /** [L1] Acknowledged writes are made durable before the file is released; a failure is reported, not lost. */
  protected async closeFiles(): Promise<void> {
    try {
      this.checkNotPoisoned();
      if (!this.readOnly) await this.flushAll();
    } finally {
      await this.file.close();
    }
  }
}
