// The reference model for property tests: what a guest must read back from a disk, as a flat
// byte array (sparse, so multi-megabyte disks cost only what was written). It knows nothing
// of clusters or tables; the engine must behave as if it were this array.

const PAGE = 4096;

/** Sparse bytes: absent pages read as zeros. */
export class SparseBytes {
  private pages = new Map<number, Uint8Array>();

  read(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let pos = offset; pos < offset + length;) {
      const index = Math.floor(pos / PAGE);
      const inPage = pos - index * PAGE;
      const n = Math.min(PAGE - inPage, offset + length - pos);
      const page = this.pages.get(index);
      if (page) out.set(page.subarray(inPage, inPage + n), pos - offset);
      pos += n;
    }
    return out;
  }

  write(offset: number, bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length;) {
      const pos = offset + done;
      const index = Math.floor(pos / PAGE);
      const inPage = pos - index * PAGE;
      const n = Math.min(PAGE - inPage, bytes.length - done);
      let page = this.pages.get(index);
      if (!page) {
        if (isZero(bytes, done, n)) { done += n; continue; }
        page = new Uint8Array(PAGE);
        this.pages.set(index, page);
      }
      page.set(bytes.subarray(done, done + n), inPage);
      done += n;
    }
  }

  zero(offset: number, length: number): void {
    for (let pos = offset; pos < offset + length;) {
      const index = Math.floor(pos / PAGE);
      const inPage = pos - index * PAGE;
      const n = Math.min(PAGE - inPage, offset + length - pos);
      const page = this.pages.get(index);
      if (page) {
        if (n === PAGE) this.pages.delete(index); else page.fill(0, inPage, inPage + n);
      }
      pos += n;
    }
  }

  /** Copy [offset, offset+length) of `from` into the same range here. */
  copyFrom(from: SparseBytes, offset: number, length: number): void {
    this.zero(offset, length);
    for (const [index, page] of from.pages) {
      const start = Math.max(offset, index * PAGE);
      const end = Math.min(offset + length, (index + 1) * PAGE);
      if (start < end) this.write(start, page.subarray(start - index * PAGE, end - index * PAGE));
    }
  }

  /** Offsets of the pages holding data, for sampling reads where the content is. */
  pageOffsets(): number[] { return [...this.pages.keys()].map((i) => i * PAGE); }
}

function isZero(bytes: Uint8Array, from: number, length: number): boolean {
  for (let i = from; i < from + length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** What a device of `size` bytes reads: its own content; nothing past `size`. */
export class DiskModel {
  readonly content = new SparseBytes();

  constructor(public size: number) {}

  /**
   * A new overlay of `size` bytes over `backing`: unallocated space shows the backing
   * device's bytes up to its size, zeros past it.
   */
  static overlay(size: number, backing: DiskModel | null): DiskModel {
    const model = new DiskModel(size);
    if (backing) model.content.copyFrom(backing.content, 0, Math.min(size, backing.size));
    return model;
  }

  read(offset: number, length: number): Uint8Array { return this.content.read(offset, length); }
  write(offset: number, bytes: Uint8Array): void { this.content.write(offset, bytes); }
  writeZeroes(offset: number, length: number): void { this.content.zero(offset, length); }
  /** Advisory: discard never changes what a read returns (QEMU's QED ignores it). */
  discard(_offset: number, _length: number): void { /* content unchanged */ }

  /**
   * Growing a disk exposes new space that reads as zeros, whatever the backing file holds
   * there. QEMU (7.2, block.c bdrv_co_truncate) enforces the same rule: when the backing file
   * is longer than the old size it asks the driver to zero the new area, and QED, which
   * cannot, refuses the resize ("Block driver does not support requested flags"). Either
   * outcome keeps backing data that the guest never saw from appearing in its disk.
   */
  grow(newSize: number): void {
    this.content.zero(this.size, newSize - this.size);
    this.size = newSize;
  }
}

/** A deterministic, recognisable byte pattern: never all one value unless `seed` says so. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  if (seed < 4) { out.fill([0, 0xff, 0xaa, 0x01][seed]!); return out; }
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** First differing index of two equal-length arrays, or -1. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
