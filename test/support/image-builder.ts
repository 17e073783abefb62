// An independent QED image builder for test fixtures, written from the format description
// (docs/qed-format.md, QEMU's qed_spec.txt), deliberately NOT using src/format's encoders:
// a fixture built by the code under test would only prove that the code agrees with itself.
// Every header field can be set to any value, including the hostile ones, and tables and
// data can be placed at any offset.
//
// Layout reminder (all little-endian):
//   0  magic u32 "QED\0"          24 compat_features u64     48 image_size u64
//   4  cluster_size u32           32 autoclear_features u64  56 backing_filename_offset u32
//   8  table_size u32             40 l1_table_offset u64     60 backing_filename_size u32
//   12 header_size u32 (clusters)
//   16 features u64 (0x1 backing file, 0x2 need check, 0x4 backing is raw)
// Entries per table = table_size * cluster_size / 8; an L2 entry of 1 is a zero cluster.
import { MemoryFile, MemoryStore } from '../../src/io/memory-file.js';

export const MAGIC = 0x00444551;
export const F_BACKING_FILE = 0x1n;
export const F_NEED_CHECK = 0x2n;
export const F_NO_PROBE = 0x4n;

/** Every field of the 64-byte header, as stored: u64 fields are bigints so that any value fits. */
export interface HeaderFields {
  magic: number;
  clusterSize: number;
  tableSize: number;
  headerSize: number;
  features: bigint;
  compatFeatures: bigint;
  autoclearFeatures: bigint;
  l1TableOffset: bigint;
  imageSize: bigint;
  backingFilenameOffset: number;
  backingFilenameSize: number;
}

/** The 64 header bytes for the given fields, written with DataView, not with src/base/bytes. */
export function headerBytes(fields: HeaderFields): Uint8Array {
  const bytes = new Uint8Array(64);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, fields.magic >>> 0, true);
  v.setUint32(4, fields.clusterSize >>> 0, true);
  v.setUint32(8, fields.tableSize >>> 0, true);
  v.setUint32(12, fields.headerSize >>> 0, true);
  v.setBigUint64(16, BigInt.asUintN(64, fields.features), true);
  v.setBigUint64(24, BigInt.asUintN(64, fields.compatFeatures), true);
  v.setBigUint64(32, BigInt.asUintN(64, fields.autoclearFeatures), true);
  v.setBigUint64(40, BigInt.asUintN(64, fields.l1TableOffset), true);
  v.setBigUint64(48, BigInt.asUintN(64, fields.imageSize), true);
  v.setUint32(56, fields.backingFilenameOffset >>> 0, true);
  v.setUint32(60, fields.backingFilenameSize >>> 0, true);
  return bytes;
}

/** A u64 table entry, little-endian; any value up to 2^64-1. */
export function entryBytes(value: bigint | number): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(value)), true);
  return bytes;
}

export interface BuilderOptions {
  clusterSize?: number;
  tableSize?: number;
  headerSize?: number;
  imageSize?: number;
}

/**
 * Builds an image the way QEMU lays one out (header clusters, then the L1 table, then
 * whatever is appended), then lets a test break any part of it. Writes are recorded and
 * replayed into a sparse MemoryFile, so a fixture claiming gigabytes costs only its bytes.
 */
export class ImageBuilder {
  readonly header: HeaderFields;
  readonly cs: number;
  private writes: Array<{ offset: number; bytes: Uint8Array }> = [];
  /** The file length; appends go here. */
  end: number;

  constructor(options: BuilderOptions = {}) {
    const clusterSize = options.clusterSize ?? 65536;
    const tableSize = options.tableSize ?? 4;
    const headerSize = options.headerSize ?? 1;
    this.cs = clusterSize;
    this.header = {
      magic: MAGIC,
      clusterSize,
      tableSize,
      headerSize,
      features: 0n,
      compatFeatures: 0n,
      autoclearFeatures: 0n,
      l1TableOffset: BigInt(headerSize * clusterSize),
      imageSize: BigInt(options.imageSize ?? 1024 * 1024),
      backingFilenameOffset: 0,
      backingFilenameSize: 0,
    };
    this.end = (headerSize + tableSize) * clusterSize;
  }

  get tableBytes(): number { return this.header.tableSize * this.cs; }
  get entriesPerTable(): number { return this.tableBytes / 8; }
  get l1Offset(): number { return Number(this.header.l1TableOffset); }
  /** Guest bytes one L2 table covers. */
  get bytesPerL2(): number { return this.entriesPerTable * this.cs; }

  /** Store a backing file name right after the 64-byte fields, as QEMU does, and set the flag. */
  backing(name: string, raw = false, offset = 64): this {
    const bytes = new TextEncoder().encode(name);
    this.put(offset, bytes);
    this.header.features |= F_BACKING_FILE | (raw ? F_NO_PROBE : 0n);
    this.header.backingFilenameOffset = offset;
    this.header.backingFilenameSize = bytes.length;
    return this;
  }

  /** Reserve `clusters` clusters at the end of the file; returns their offset. */
  append(clusters = 1): number {
    const at = this.end;
    this.end += clusters * this.cs;
    return at;
  }

  /** A new, empty L2 table at the end of the file. */
  appendTable(): number { return this.append(this.header.tableSize); }

  /** A data cluster at the end of the file filled with `fill` (or the given bytes). */
  appendData(fill: number | Uint8Array): number {
    const at = this.append(1);
    this.put(at, typeof fill === 'number' ? new Uint8Array(this.cs).fill(fill) : fill);
    return at;
  }

  setL1(index: number, value: bigint | number): this { return this.put(this.l1Offset + index * 8, entryBytes(value)); }
  setL2(tableOffset: number, index: number, value: bigint | number): this { return this.put(tableOffset + index * 8, entryBytes(value)); }

  /**
   * Map guest cluster `guestCluster` to a new data cluster filled with `fill`, creating its L2
   * table if needed. Returns the data cluster's offset.
   */
  mapData(guestCluster: number, fill: number | Uint8Array): number {
    const l1Index = Math.floor(guestCluster / this.entriesPerTable);
    let table = this.tables.get(l1Index);
    if (table === undefined) {
      table = this.appendTable();
      this.tables.set(l1Index, table);
      this.setL1(l1Index, table);
    }
    const data = this.appendData(fill);
    this.setL2(table, guestCluster % this.entriesPerTable, data);
    return data;
  }

  /** Make guest cluster `guestCluster` a zero cluster (L2 entry 1). */
  mapZero(guestCluster: number): this {
    const l1Index = Math.floor(guestCluster / this.entriesPerTable);
    let table = this.tables.get(l1Index);
    if (table === undefined) {
      table = this.appendTable();
      this.tables.set(l1Index, table);
      this.setL1(l1Index, table);
    }
    return this.setL2(table, guestCluster % this.entriesPerTable, 1);
  }

  /** The L2 table offset of an L1 index created by mapData/mapZero. */
  tableOf(l1Index: number): number {
    const t = this.tables.get(l1Index);
    if (t === undefined) throw new Error(`no L2 table for L1 index ${l1Index}`);
    return t;
  }

  private tables = new Map<number, number>();

  /** Raw bytes anywhere (header space included); the file grows to cover them. */
  put(offset: number, bytes: Uint8Array): this {
    this.writes.push({ offset, bytes: bytes.slice() });
    this.end = Math.max(this.end, offset + bytes.length);
    return this;
  }

  /** Set the file length (shorter cuts tables or data off, longer appends zeros). */
  truncate(length: number): this { this.end = length; return this; }

  /** The finished image as a sparse MemoryFile (the header is written last, over anything). */
  toFile(path = 'built.qed'): MemoryFile {
    const file = new MemoryFile(path);
    for (const w of this.writes) file.writeSync(w.bytes, w.offset);
    file.writeSync(headerBytes(this.header), 0);
    file.truncateSync(this.end);
    return file;
  }

  /** The finished image as bytes (only for small images). */
  toBytes(): Uint8Array {
    const file = this.toFile();
    const out = new Uint8Array(file.sizeSync);
    file.readSync(out, 0);
    return out;
  }

  /** Add the image to a MemoryStore under `path`. */
  addTo(store: MemoryStore, path: string): MemoryFile {
    return store.add(path, this.toFile(path));
  }
}

/** A raw file with the given bytes (sparse beyond them up to `length`). */
export function rawFile(path: string, length: number, pieces: Array<{ offset: number; bytes: Uint8Array }> = []): MemoryFile {
  const file = new MemoryFile(path);
  for (const p of pieces) file.writeSync(p.bytes, p.offset);
  file.truncateSync(length);
  return file;
}
