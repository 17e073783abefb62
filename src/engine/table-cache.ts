// Bounded cache of table chunks (QEMU's qed-l2-cache.c, generalised to L1 too).
//
// Tables are cached in 4 KiB chunks keyed by host offset, not whole tables: a 16-cluster table
// of 64 MiB clusters is 1 GiB, and random access touches one entry of it. Memory stays under
// `capacityBytes` however large the image is; dirty or pinned chunks may exceed it briefly,
// until the owner writes them back (the cache never writes behind the owner's back).
//
// Concurrency: JS runs one task at a time, so a chunk is read and changed synchronously between
// awaits. A chunk that a caller holds across an await must be pinned (acquire/release), so that
// it cannot be evicted and reloaded as a different object while the caller still changes it.

export const TABLE_CHUNK_BYTES = 4096;
export const ENTRIES_PER_CHUNK = TABLE_CHUNK_BYTES / 8;

export class TableChunk {
  readonly view: DataView;
  dirty = false;
  /** Bumped on every change, so writeback knows whether a snapshot is still current. */
  generation = 0;
  pins = 0;
  /** Used since eviction last passed it: a second chance instead of reordering the map on every hit. */
  recent = false;

  constructor(readonly hostOffset: number, readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
}

interface PendingLoad { waiters: number; promise: Promise<TableChunk> }

export interface CacheStats { hits: number; misses: number; evictions: number; chunks: number }

export class TableCache {
  /**
   * Insertion order is eviction order, with a second chance: a hit only marks the chunk
   * recent, and eviction moves a recent chunk to the end instead of dropping it (the clock
   * approximation of least recently used, without a map delete and insert on every hit).
   */
  private chunks = new Map<number, TableChunk>();
  private loading = new Map<number, PendingLoad>();
  readonly stats: CacheStats = { hits: 0, misses: 0, evictions: 0, chunks: 0 };
  /** Called when dirty chunks keep the cache over its bound; the owner writes them back. */
  onPressure: (() => void) | null = null;

  constructor(
    private readonly load: (hostOffset: number, into: Uint8Array) => Promise<void>,
    readonly capacityBytes: number,
  ) {}

  /** The chunk holding `hostOffset`, pinned. Release it when done. */
  async acquire(hostOffset: number): Promise<TableChunk> {
    const cached = this.chunks.get(hostOffset);
    if (cached) {
      cached.recent = true;
      cached.pins++;
      this.stats.hits++;
      return cached;
    }
    let load = this.loading.get(hostOffset);
    if (!load) {
      this.stats.misses++;
      load = { waiters: 0, promise: Promise.resolve(null as unknown as TableChunk) };
      this.loading.set(hostOffset, load);
      load.promise = this.fill(hostOffset, load);
    }
    load.waiters++;
    return load.promise; // pinned on this caller's behalf by fill
  }

  /**
   * The chunk at `hostOffset` if cached, else undefined; never loads and does not pin, so the
   * caller must use it before its next await (the hot path of requests inside one cluster).
   */
  peek(hostOffset: number): TableChunk | undefined {
    const cached = this.chunks.get(hostOffset);
    if (cached) { cached.recent = true; this.stats.hits++; }
    return cached;
  }

  release(chunk: TableChunk): void {
    chunk.pins--;
    if (chunk.pins === 0) this.evictOverflow();
  }

  /** A chunk of a table just allocated in fresh file space: all zeros, no read needed. */
  createZeroed(hostOffset: number): TableChunk {
    const existing = this.chunks.get(hostOffset);
    if (existing) { existing.bytes.fill(0); return existing; }
    const chunk = new TableChunk(hostOffset, new Uint8Array(TABLE_CHUNK_BYTES));
    this.insert(chunk);
    return chunk;
  }

  markDirty(chunk: TableChunk): void {
    chunk.dirty = true;
    chunk.generation++;
  }

  dirtyChunks(): TableChunk[] {
    return [...this.chunks.values()].filter((c) => c.dirty);
  }

  get dirtyCount(): number {
    let n = 0;
    for (const c of this.chunks.values()) if (c.dirty) n++;
    return n;
  }

  /** Forget everything (after a failed writeback, or on close). */
  clear(): void { this.chunks.clear(); }

  get sizeBytes(): number { return this.chunks.size * TABLE_CHUNK_BYTES; }

  /** Over the bound with only dirty or pinned chunks left to evict: the owner should write back. */
  get overCapacity(): boolean { return this.sizeBytes > this.capacityBytes; }

  /**
   * Load a chunk and pin it once for every caller waiting on the load, before anything can
   * evict it: otherwise a cache full of dirty chunks would evict the newcomer at once and the
   * caller would reload it forever.
   */
  private async fill(hostOffset: number, load: PendingLoad): Promise<TableChunk> {
    try {
      const bytes = new Uint8Array(TABLE_CHUNK_BYTES);
      await this.load(hostOffset, bytes);
      let chunk = this.chunks.get(hostOffset);
      if (!chunk) {
        chunk = new TableChunk(hostOffset, bytes);
        this.chunks.set(hostOffset, chunk);
        this.stats.chunks = this.chunks.size;
      }
      chunk.pins += load.waiters;
      this.evictOverflow();
      return chunk;
    } finally {
      this.loading.delete(hostOffset);
    }
  }

  private insert(chunk: TableChunk): void {
    this.chunks.set(chunk.hostOffset, chunk);
    this.stats.chunks = this.chunks.size;
    this.evictOverflow();
  }

  private evictOverflow(): void {
    if (this.sizeBytes <= this.capacityBytes) return;
    let dirtyBlocking = false;
    for (const [offset, chunk] of this.chunks) {
      if (this.sizeBytes <= this.capacityBytes) break;
      if (chunk.pins > 0) continue;
      if (chunk.dirty) { dirtyBlocking = true; continue; }
      this.chunks.delete(offset);
      if (chunk.recent) { chunk.recent = false; this.chunks.set(offset, chunk); continue; } // met again at the end
      this.stats.evictions++;
    }
    this.stats.chunks = this.chunks.size;
    if (dirtyBlocking && this.sizeBytes > this.capacityBytes) this.onPressure?.();
  }
}
