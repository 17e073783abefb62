// A sparse bitmap of cluster indexes: memory grows with the clusters really referenced, not
// with the file size a hostile header or a sparse file claims.

/** 64 Ki clusters a page (8 KiB): small images, checked many times by the crash tests, stay cheap. */
const PAGE_BITS = 1 << 16;

export class UsedClusters {
  private pages = new Map<number, Uint32Array>();
  private count = 0;
  private top = -1;

  has(index: number): boolean {
    const page = this.pages.get(Math.floor(index / PAGE_BITS));
    if (!page) return false;
    const bit = index % PAGE_BITS;
    return (page[bit >>> 5]! & (1 << (bit & 31))) !== 0;
  }

  mark(index: number): void {
    const pageIndex = Math.floor(index / PAGE_BITS);
    let page = this.pages.get(pageIndex);
    if (!page) { page = new Uint32Array(PAGE_BITS / 32); this.pages.set(pageIndex, page); }
    const bit = index % PAGE_BITS;
    const mask = 1 << (bit & 31);
    if ((page[bit >>> 5]! & mask) === 0) {
      page[bit >>> 5] = page[bit >>> 5]! | mask;
      this.count++;
      if (index > this.top) this.top = index;
    }
  }

  unmark(index: number): void {
    const page = this.pages.get(Math.floor(index / PAGE_BITS));
    if (!page) return;
    const bit = index % PAGE_BITS;
    const mask = 1 << (bit & 31);
    if ((page[bit >>> 5]! & mask) === 0) return;
    page[bit >>> 5] = page[bit >>> 5]! & ~mask;
    this.count--;
    if (index === this.top) this.top = this.findTop();
  }

  private findTop(): number {
    let top = -1;
    for (const [pageIndex, page] of this.pages) {
      for (let w = page.length - 1; w >= 0; w--) {
        if (page[w] === 0) continue;
        const candidate = pageIndex * PAGE_BITS + w * 32 + (31 - Math.clz32(page[w]!));
        if (candidate > top) top = candidate;
        break;
      }
    }
    return top;
  }

  markRange(first: number, count: number): void {
    for (let i = 0; i < count; i++) this.mark(first + i);
  }

  /** How many of [first, first+count) are marked. */
  countMarked(first: number, count: number): number {
    let marked = 0;
    for (let i = 0; i < count; i++) if (this.has(first + i)) marked++;
    return marked;
  }

  /** Mark all of [first, first+count) and say how many were marked already (QEMU's qed_set_used_clusters). */
  markRangeCountingOverlaps(first: number, count: number): number {
    let overlaps = 0;
    for (let i = 0; i < count; i++) {
      if (this.has(first + i)) overlaps++;
      else this.mark(first + i);
    }
    return overlaps;
  }

  /** How many marked indexes are below `limit`. */
  countBelow(limit: number): number {
    if (this.top < limit) return this.count;
    let n = 0;
    for (const [pageIndex, page] of this.pages) {
      const base = pageIndex * PAGE_BITS;
      if (base >= limit) continue;
      for (let w = 0; w < page.length; w++) {
        let word = page[w]!;
        while (word !== 0) {
          const low = word & -word;
          if (base + w * 32 + Math.log2(low >>> 0) < limit) n++;
          word ^= low;
        }
      }
    }
    return n;
  }

  highest(): number { return this.top; }
  get total(): number { return this.count; }
}
