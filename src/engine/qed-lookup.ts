// Finding clusters (QEMU's qed-cluster.c, qed_find_cluster): the plan for a guest range as
// merged runs of data (with host offset), zero and unallocated clusters, never crossing an L2
// table boundary. Read, write, zeroing and block status all consume it. Also decides which
// table entries may be followed: an entry that points outside what this image may use fails
// the request, or reads as unallocated on a dirty image opened read-only.
import { FormatError, hex } from '../base/errors.js';
import { entryAt } from '../base/bytes.js';
import type { BlockFile } from '../io/block-file.js';
import { QED_UNALLOCATED, QED_ZERO_CLUSTER } from '../format/constants.js';
import type { Geometry } from '../format/geometry.js';
import { isValidClusterOffset, isValidTableOffset } from '../format/table.js';
import type { LayerExtent } from './device.js';
import { ENTRIES_PER_CHUNK, TABLE_CHUNK_BYTES, type TableCache } from './table-cache.js';
import { appendWithin } from './layer-runs.js';

export interface LookupOptions {
  file: BlockFile;
  geometry: Geometry;
  l1TableOffset: number;
  /** The file's end at open, rounded up to a cluster: entries on disk beyond it were not written by us. */
  openEnd: number;
  /** A dirty image opened read-only reads as the repair will leave it: invalid entries read as unallocated. */
  readAsRepaired: boolean;
  /** With readAsRepaired: entries (by host offset) the repair will clear for reasons only a whole-image check sees. */
  clearedByRepair?: ReadonlySet<number>;
  /** The allocator's end: nothing may point past what has been handed out. */
  allocatedEnd: () => number;
}

/**
 * Counts table chunks a walk examined and lets the event loop run after every few of them,
 * so a status over a huge dense range does not hold the loop; passing unallocated L1
 * entries is not work enough to pause for.
 */
export class WorkMeter {
  private chunks = 0;
  constructor(private readonly pause: () => Promise<void>, private readonly chunksPerPause = PAUSE_EVERY_CHUNKS) {}
  tick(): Promise<void> | undefined {
    return ++this.chunks % this.chunksPerPause === 0 ? this.pause() : undefined;
  }
}

/** 16 chunks, 8192 entries: the zeroing's step (STEP_CLUSTERS), the walk between two turns of the loop. */
const PAUSE_EVERY_CHUNKS = 16;

interface WalkLimits {
  /** Merge runs across L2 tables (mapRuns) or split at them (mapRange's contract). */
  mergeTables: boolean;
  maxRuns: number;
  meter?: WorkMeter;
}

export class ClusterLookup {
  cache!: TableCache;
  /**
   * Positions of entries found on disk naming space at or past openEnd (a data cluster, or any
   * part of an L2 table). They stay invalid for the life of the image, even once allocations
   * make the file reach that far: otherwise a stale or hostile entry would come to alias a
   * cluster this process allocated.
   */
  private readonly suspectEntries = new Set<number>();
  private readonly scannedChunks = new Set<number>();

  constructor(private readonly o: LookupOptions) {}

  /** The cache's loader: reads a chunk, and on its first load from the original file notes entries reaching past openEnd. */
  async loadTableChunk(hostOffset: number, into: Uint8Array): Promise<void> {
    await this.o.file.read(into, hostOffset);
    if (hostOffset >= this.o.openEnd || this.scannedChunks.has(hostOffset)) return;
    this.scannedChunks.add(hostOffset);
    const view = new DataView(into.buffer, into.byteOffset, into.byteLength);
    // An L1 entry names a whole table: one that starts inside the file but runs past its end
    // is as stale as one that starts past it (allocations would later fill it with guest data).
    const inL1 = hostOffset >= this.o.l1TableOffset && hostOffset < this.o.l1TableOffset + this.o.geometry.tableBytes;
    const reach = inL1 ? this.o.geometry.tableBytes : this.o.geometry.clusterSize;
    for (let i = 0; i < ENTRIES_PER_CHUNK; i++) {
      const entry = entryAt(view, i);
      if (entry !== QED_UNALLOCATED && entry !== QED_ZERO_CLUSTER && entry + reach > this.o.openEnd) this.suspectEntries.add(hostOffset + i * 8);
    }
  }

  l1ChunkOffset(l1Index: number): number {
    return this.o.l1TableOffset + Math.floor(l1Index / ENTRIES_PER_CHUNK) * TABLE_CHUNK_BYTES;
  }

  /**
   * The hot path of reads and overwrites: the host offset of [offset, offset+length) when it
   * lies inside one data cluster whose L1 and L2 chunks are cached and whose entries are
   * usable; -1 otherwise, and the caller takes mapRange's general path, which loads what is
   * missing and reports what is invalid. Synchronous and allocation-free: the same answer
   * mapRange would give as its single data extent, without building it.
   */
  cachedDataOffset(offset: number, length: number): number {
    // A dirty image opened read-only with entries its repair will clear: the general path decides.
    if (this.o.clearedByRepair !== undefined && this.o.clearedByRepair.size > 0) return -1;
    const g = this.o.geometry;
    const within = offset % g.clusterSize;
    if (within + length > g.clusterSize) return -1;
    const l1Index = g.l1Index(offset);
    const l1Chunk = this.cache.peek(this.l1ChunkOffset(l1Index));
    if (l1Chunk === undefined) return -1;
    const l1Slot = l1Index % ENTRIES_PER_CHUNK;
    const l2Offset = entryAt(l1Chunk.view, l1Slot);
    if (l2Offset === QED_UNALLOCATED || !this.isValidTable(l2Offset, l1Chunk.hostOffset + l1Slot * 8)) return -1;
    const l2Index = g.l2Index(offset);
    const l2Chunk = this.cache.peek(l2Offset + Math.floor(l2Index / ENTRIES_PER_CHUNK) * TABLE_CHUNK_BYTES);
    if (l2Chunk === undefined) return -1;
    const l2Slot = l2Index % ENTRIES_PER_CHUNK;
    const entry = entryAt(l2Chunk.view, l2Slot);
    if (entry === QED_UNALLOCATED || entry === QED_ZERO_CLUSTER || !this.isValidData(entry, l2Chunk.hostOffset + l2Slot * 8)) return -1;
    return entry + within;
  }

  /**
   * cachedDataOffset over several clusters: the host offset of [offset, offset+length) when
   * every cluster of it is data, the clusters lie back to back in the file and their entries
   * are cached and usable; -1 otherwise (the general path decides). Lets a 256 KiB NBD read
   * of 64 KiB clusters be one file call without a block-status walk.
   */
  cachedDataRange(offset: number, length: number): number {
    const cs = this.o.geometry.clusterSize;
    const first = this.cachedDataOffset(offset, Math.min(length, cs - (offset % cs)));
    if (first < 0) return -1;
    for (let pos = offset - (offset % cs) + cs, host = first - (offset % cs) + cs; pos < offset + length; pos += cs, host += cs) {
      if (this.cachedDataOffset(pos, Math.min(cs, offset + length - pos)) !== host) return -1;
    }
    return first;
  }

  /** The runs of [offset, offset+length), split at L2 table boundaries. */
  async mapRange(offset: number, length: number, meter?: WorkMeter): Promise<LayerExtent[]> {
    const extents: LayerExtent[] = [];
    await this.walk(offset, offset + length, extents, { mergeTables: false, maxRuns: Infinity, meter });
    return extents;
  }

  /**
   * The runs from `offset` on, as far into [offset, offset+length) as `maxRuns` runs reach
   * (at least one), merged across tables: an empty 64 TiB image is one run.
   */
  async mapRuns(offset: number, length: number, maxRuns: number, meter?: WorkMeter): Promise<LayerExtent[]> {
    const extents: LayerExtent[] = [];
    await this.walk(offset, offset + length, extents, { mergeTables: true, maxRuns: Math.max(1, maxRuns), meter });
    return extents;
  }

  /** The L1 entry, or unallocated where it may not be followed on a dirty read-only image. */
  async readL1Entry(l1Index: number): Promise<number> {
    const chunkOffset = this.l1ChunkOffset(l1Index);
    const chunk = await this.cache.acquire(chunkOffset);
    try {
      return this.usableL1Entry(chunk.view, chunkOffset, l1Index % ENTRIES_PER_CHUNK);
    } finally {
      this.cache.release(chunk);
    }
  }

  private usableL1Entry(view: DataView, chunkOffset: number, slot: number): number {
    const entry = entryAt(view, slot);
    if (entry === QED_UNALLOCATED) return entry;
    return this.isUsableTableOffset(entry, chunkOffset + slot * 8) ? entry : QED_UNALLOCATED;
  }

  /**
   * Appends the runs of [start, end) to `out` until adding one more would pass maxRuns;
   * returns where it stopped. Unallocated L1 entries are passed in one synchronous scan of
   * their chunk (one await per chunk, not per entry).
   */
  private async walk(start: number, end: number, out: LayerExtent[], how: WalkLimits): Promise<number> {
    const g = this.o.geometry;
    for (let pos = start; pos < end;) {
      const l1Index = g.l1Index(pos);
      const chunkOffset = this.l1ChunkOffset(l1Index);
      const chunkEnd = Math.min(end, (Math.floor(l1Index / ENTRIES_PER_CHUNK) + 1) * ENTRIES_PER_CHUNK * g.bytesPerL2);
      const chunk = await this.cache.acquire(chunkOffset);
      let l2Offset = QED_UNALLOCATED;
      try {
        while (pos < chunkEnd) {
          l2Offset = this.usableL1Entry(chunk.view, chunkOffset, g.l1Index(pos) % ENTRIES_PER_CHUNK);
          if (l2Offset !== QED_UNALLOCATED) break;
          // Where tables may merge, the unallocated entries that follow join this run before it
          // is built: one object for the stretch, not one per entry.
          let runEnd = Math.min(end, g.l2CoverageEnd(pos));
          if (how.mergeTables && restIsUnallocated(chunk.view, g.l1Index(runEnd - 1) % ENTRIES_PER_CHUNK)) runEnd = chunkEnd;
          while (how.mergeTables && runEnd < chunkEnd && this.usableL1Entry(chunk.view, chunkOffset, g.l1Index(runEnd) % ENTRIES_PER_CHUNK) === QED_UNALLOCATED) {
            runEnd = Math.min(end, g.l2CoverageEnd(runEnd));
          }
          if (!appendWithin(out, { kind: 'unallocated', guestOffset: pos, length: runEnd - pos }, how.mergeTables ? 0 : out.length, how.maxRuns)) return pos;
          pos = runEnd;
        }
      } finally {
        this.cache.release(chunk);
      }
      const pause = how.meter?.tick();
      if (pause) await pause;
      if (l2Offset === QED_UNALLOCATED) continue;
      const tableEnd = Math.min(end, g.l2CoverageEnd(pos));
      const reached = await this.mapWithinTable(l2Offset, pos, tableEnd, out, how);
      if (reached < tableEnd) return reached;
      pos = tableEnd;
    }
    return end;
  }

  private async mapWithinTable(l2Offset: number, start: number, end: number, out: LayerExtent[], how: WalkLimits): Promise<number> {
    const g = this.o.geometry;
    const cs = g.clusterSize;
    const firstMergeable = how.mergeTables ? 0 : out.length;
    for (let pos = start; pos < end;) {
      const l2Index = g.l2Index(pos);
      const chunkOffset = l2Offset + Math.floor(l2Index / ENTRIES_PER_CHUNK) * TABLE_CHUNK_BYTES;
      const chunk = await this.cache.acquire(chunkOffset);
      try {
        const first = l2Index % ENTRIES_PER_CHUNK;
        if (restIsUnallocated(chunk.view, first)) {
          // A sparse table costs a scan per chunk, not an object per entry.
          const next = Math.min(end, g.clusterStart(pos) + (ENTRIES_PER_CHUNK - first) * cs);
          if (!appendWithin(out, { kind: 'unallocated', guestOffset: pos, length: next - pos }, firstMergeable, how.maxRuns)) return pos;
          pos = next;
        } else {
          for (let i = first; i < ENTRIES_PER_CHUNK && pos < end; i++) {
            const entry = entryAt(chunk.view, i);
            const next = Math.min(end, g.clusterStart(pos) + cs);
            let extent: LayerExtent;
            if (entry === QED_UNALLOCATED) extent = { kind: 'unallocated', guestOffset: pos, length: next - pos };
            else if (entry === QED_ZERO_CLUSTER) extent = { kind: 'zero', guestOffset: pos, length: next - pos };
            else if (!this.isUsableDataOffset(entry, chunkOffset + i * 8)) extent = { kind: 'unallocated', guestOffset: pos, length: next - pos };
            else extent = { kind: 'data', guestOffset: pos, length: next - pos, hostOffset: entry + (pos % cs) };
            if (!appendWithin(out, extent, firstMergeable, how.maxRuns)) return pos;
            pos = next;
          }
        }
      } finally {
        this.cache.release(chunk);
      }
      const pause = how.meter?.tick();
      if (pause) await pause;
    }
    return end;
  }

  private isValidData(entry: number, entryAtHost: number): boolean {
    const g = this.o.geometry;
    return (this.suspectEntries.size === 0 || !this.suspectEntries.has(entryAtHost))
      && isValidClusterOffset(entry, g.clusterSize, g.headerBytes, this.o.allocatedEnd())
      && !this.overlapsL1(entry, g.clusterSize);
  }

  private isValidTable(entry: number, entryAtHost: number): boolean {
    const g = this.o.geometry;
    return (this.suspectEntries.size === 0 || !this.suspectEntries.has(entryAtHost))
      && isValidTableOffset(entry, g.tableBytes, g.clusterSize, g.headerBytes, this.o.allocatedEnd())
      && !this.overlapsL1(entry, g.tableBytes);
  }

  private isUsableDataOffset(entry: number, entryAtHost: number): boolean {
    if (this.o.readAsRepaired && this.o.clearedByRepair?.has(entryAtHost)) return false;
    if (this.isValidData(entry, entryAtHost)) return true;
    if (this.o.readAsRepaired) return false;
    throw new FormatError(`L2 entry at ${hex(entryAtHost)} holds invalid cluster offset ${hex(entry)}`, { path: this.o.file.path, hostOffset: entryAtHost });
  }

  private isUsableTableOffset(entry: number, entryAtHost: number): boolean {
    if (this.o.readAsRepaired && this.o.clearedByRepair?.has(entryAtHost)) return false;
    if (this.isValidTable(entry, entryAtHost)) return true;
    if (this.o.readAsRepaired) return false;
    throw new FormatError(`L1 entry at ${hex(entryAtHost)} holds invalid L2 table offset ${hex(entry)}`, { path: this.o.file.path, hostOffset: entryAtHost });
  }

  /** An entry aimed at the L1 table would let guest writes overwrite metadata. */
  private overlapsL1(offset: number, length: number): boolean {
    const l1 = this.o.l1TableOffset;
    return offset < l1 + this.o.geometry.tableBytes && l1 < offset + length;
  }
}

/** True when every entry of the chunk from `first` on is 0 (unallocated). */
function restIsUnallocated(view: DataView, first: number): boolean {
  for (let at = first * 8; at < view.byteLength; at += 8) {
    if (view.getUint32(at, true) !== 0 || view.getUint32(at + 4, true) !== 0) return false;
  }
  return true;
}
