// A raw image: guest offset = file offset. Used as a backing file and for raw conversions.
import type { BlockFile } from '../io/block-file.js';
import { checkRequest, type BlockDevice, type LayerExtent } from './device.js';
import { writeZerosAt } from '../io/zeros.js';
import { QedError } from '../base/errors.js';
import { alignUp } from '../base/math.js';
import { SECTOR_SIZE } from '../format/constants.js';

export class RawImage implements BlockDevice {
  readonly format = 'raw' as const;
  readonly backing = null;
  private closed = false;

  /** `fileLength` is the bytes really in the file; the guest size is rounded up to a sector. */
  constructor(readonly file: BlockFile, private fileLength: number) {}

  /** Like QEMU, the size is the file length rounded up to a sector; the padding reads as zeros. */
  static async open(file: BlockFile): Promise<RawImage> {
    return new RawImage(file, await file.size());
  }

  private get length(): number { return alignUp(this.fileLength, SECTOR_SIZE); }

  get path(): string { return this.file.path; }
  get readOnly(): boolean { return this.file.readOnly; }
  get size(): number { return this.length; }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    this.checkOpen();
    checkRequest(this, offset, buf.length, false);
    await this.file.read(buf, offset);
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.checkOpen();
    checkRequest(this, offset, buf.length, true);
    await this.file.write(buf, offset);
    this.fileLength = Math.max(this.fileLength, offset + buf.length);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.checkOpen();
    checkRequest(this, offset, length, true);
    await writeZerosAt(this.file, offset, length);
    this.fileLength = Math.max(this.fileLength, offset + length);
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkOpen();
    checkRequest(this, offset, length, true);
  }

  async flush(): Promise<void> {
    this.checkOpen();
    if (!this.readOnly) await this.file.flush();
  }

  async resize(newSize: number): Promise<void> {
    this.checkOpen();
    checkRequest(this, 0, 0, true);
    await this.file.truncate(newSize);
    this.fileLength = newSize;
  }

  /**
   * Every byte of a raw file is data at the same offset, except the padding past the file's
   * end up to the next sector, which reads as zeros (what QEMU's file layer reports too).
   */
  async blockStatus(offset: number, length: number): Promise<LayerExtent[]> {
    this.checkOpen();
    checkRequest(this, offset, length, false);
    const end = offset + length;
    const dataEnd = Math.min(end, Math.max(offset, this.fileLength));
    const extents: LayerExtent[] = [];
    if (dataEnd > offset) extents.push({ kind: 'data', guestOffset: offset, length: dataEnd - offset, hostOffset: offset });
    if (end > dataEnd) extents.push({ kind: 'zero', guestOffset: dataEnd, length: end - dataEnd, hostOffset: dataEnd });
    return extents;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.file.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new QedError('CLOSED', 'image is closed', { path: this.path });
  }
}
