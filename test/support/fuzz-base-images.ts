// The valid images the image fuzzer mutates, built with the independent ImageBuilder, and the
// map of where each structure lies (header, L1 table, L2 tables, data clusters) so that a
// mutation can aim a field or an entry at any of them. Kept small (a few clusters each) so
// that a case costs milliseconds, but covering the geometries that matter: table_size 1 (one
// cluster per table), 2 and 4, 4 KiB and 64 KiB clusters, a two-cluster header, raw and QED
// backing files, zero clusters and more than one L2 table.
import { MemoryFile, MemoryStore } from '../../src/io/memory-file.js';
import { ImageBuilder } from './image-builder.js';

export const FUZZ_IMAGE = '/fuzz/image.qed';

/** Where each structure of a base image lies, in bytes. */
export interface FuzzLayout {
  clusterSize: number;
  tableSize: number;
  headerSize: number;
  imageSize: number;
  fileSize: number;
  l1Offset: number;
  /** Offsets of the L2 tables, in L1 order. */
  l2Tables: number[];
  /** L1 indexes that name a table (same order as l2Tables). */
  l1Used: number[];
  /** For each L2 table, the indexes in use. */
  l2Used: number[][];
  dataClusters: number[];
  /** Guest offsets of the clusters the base image maps (data or zero), for reads and writes. */
  guestMapped: number[];
}

export interface FuzzBase {
  name: string;
  bytes: Uint8Array;
  layout: FuzzLayout;
  /** QEMU 7.2 cannot open table_size 1 images: never shown to qemu-img. */
  qemuCanOpen: boolean;
}

function finish(name: string, b: ImageBuilder, l1Used: number[], l2Used: number[][], data: number[], guestMapped: number[]): FuzzBase {
  const bytes = b.toBytes();
  return {
    name, bytes, qemuCanOpen: b.header.tableSize > 1,
    layout: {
      clusterSize: b.cs, tableSize: b.header.tableSize, headerSize: b.header.headerSize, imageSize: Number(b.header.imageSize),
      fileSize: bytes.length, l1Offset: b.l1Offset, l2Tables: l1Used.map((i) => b.tableOf(i)), l1Used, l2Used,
      dataClusters: data, guestMapped,
    },
  };
}

/** Two L2 tables, data in both, a zero cluster; optionally a backing file. */
function small(name: string, tableSize: number, backing?: { name: string; raw: boolean }, headerSize = 1): FuzzBase {
  const cs = 4096;
  const b = new ImageBuilder({ clusterSize: cs, tableSize, headerSize, imageSize: 0 });
  const perTable = b.entriesPerTable;
  b.header.imageSize = BigInt(2 * perTable * cs);
  if (backing) b.backing(backing.name, backing.raw);
  const guest = [0, 1, 5, perTable + 3];
  const data = [b.mapData(0, 0x11), b.mapData(1, 0x22), b.mapData(5, 0x55), b.mapData(perTable + 3, 0x33)];
  b.mapZero(7);
  return finish(name, b, [0, 1], [[0, 1, 5, 7], [3]], data, [...guest.map((g) => g * cs), 7 * cs]);
}

/** QEMU's default geometry (64 KiB clusters, 4-cluster tables), one table, two data clusters. */
function qemuDefault(): FuzzBase {
  const cs = 65536;
  const b = new ImageBuilder({ clusterSize: cs, tableSize: 4, imageSize: 64 * 1024 * 1024 });
  const data = [b.mapData(0, 0x11), b.mapData(9, 0x99)];
  b.mapZero(3);
  return finish('64k-clusters', b, [0], [[0, 3, 9]], data, [0, 9 * cs, 3 * cs]);
}

export function fuzzBases(): FuzzBase[] {
  return [
    small('4k-table1', 1),
    small('4k-table2', 2),
    small('4k-table2-raw-backing', 2, { name: 'base.raw', raw: true }),
    small('4k-table2-qed-backing', 2, { name: 'base.qed', raw: false }),
    small('4k-table4-header2-raw-backing', 4, { name: '../fuzz/base.raw', raw: false }, 2),
    qemuDefault(),
  ];
}

/** Files a backing name may lead to: good ones, a loop, and a raw file that looks like QED. */
export async function fuzzNeighbours(): Promise<Map<string, MemoryFile>> {
  const files = new Map<string, MemoryFile>();
  const raw = new MemoryFile('/fuzz/base.raw');
  for (let at = 0; at < 96 * 1024; at += 4096) raw.writeSync(new Uint8Array(4096).fill(0x40 + at / 4096), at);
  raw.truncateSync(1024 * 1024);
  files.set('/fuzz/base.raw', raw);
  const qed = new ImageBuilder({ clusterSize: 4096, tableSize: 2, imageSize: 4 * 1024 * 1024 });
  qed.mapData(2, 0x77);
  qed.mapData(6, 0x66);
  files.set('/fuzz/base.qed', qed.toFile('/fuzz/base.qed'));
  for (const [self, other] of [['loop-a.qed', 'loop-b.qed'], ['loop-b.qed', 'loop-a.qed']] as const) {
    files.set(`/fuzz/${self}`, new ImageBuilder({ clusterSize: 4096, tableSize: 2, imageSize: 1024 * 1024 }).backing(other).toFile(`/fuzz/${self}`));
  }
  // Read as raw when the header says raw: it must never be probed and followed as QED.
  const lookalike = new ImageBuilder({ clusterSize: 4096, tableSize: 2, imageSize: 1024 * 1024 }).backing('/fuzz/base.qed');
  files.set('/fuzz/looks-like-qed.raw', lookalike.toFile('/fuzz/looks-like-qed.raw'));
  return files;
}

/** A fresh store holding `bytes` as the fuzzed image, with the neighbours beside it (shared: only ever opened read-only). */
export function storeFor(bytes: Uint8Array, neighbours: Map<string, MemoryFile>): { store: MemoryStore; file: MemoryFile } {
  const store = new MemoryStore();
  for (const [path, f] of neighbours) store.add(path, f);
  const file = new MemoryFile(FUZZ_IMAGE);
  file.writeSync(bytes, 0);
  file.truncateSync(bytes.length);
  store.add(FUZZ_IMAGE, file);
  return { store, file };
}
