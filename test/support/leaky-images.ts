// Images with leaked clusters for the reclaim tests, built with the independent ImageBuilder:
// a leak low under thousands of clusters, a leak under a wall of L2 tables, and seeded random
// layouts of tables, data and leaks (single clusters, table-sized runs, orphaned entries).
import type { MemoryFile } from '../../src/io/memory-file.js';
import { ImageBuilder } from './image-builder.js';
import { Random } from './crash-random.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A cluster whose bytes say which guest cluster it holds. */
export function dataFor(guestCluster: number, clusterSize: number): Uint8Array {
  const bytes = new Uint8Array(clusterSize).fill((guestCluster % 251) + 1);
  new DataView(bytes.buffer).setUint32(0, guestCluster, true);
  return bytes;
}

export interface LeakyImage { file: MemoryFile; builder: ImageBuilder }

/** `clusters` guest clusters written in order (4 KiB clusters), then the third one orphaned. */
export function lowLeakImage(clusters: number): LeakyImage {
  const cs = 4 * KiB;
  const b = new ImageBuilder({ clusterSize: cs, tableSize: 4, imageSize: 64 * MiB });
  for (let g = 0; g < clusters; g++) b.mapData(g, dataFor(g, cs));
  const file = b.toFile();
  file.writeSync(new Uint8Array(8), b.tableOf(0) + 3 * 8);
  return { file, builder: b };
}

/** Three data clusters, one leaked cluster, then only the three L2 tables naming them. */
export function tableWallImage(): LeakyImage {
  const cs = 4 * KiB;
  const b = new ImageBuilder({ clusterSize: cs, tableSize: 4, imageSize: 64 * MiB });
  const data = [0, 1, 2].map((l1Index) => b.appendData(dataFor(l1Index * b.entriesPerTable, cs)));
  b.append(1);
  for (const [l1Index, dataOffset] of data.entries()) {
    const table = b.appendTable();
    b.setL1(l1Index, table);
    b.setL2(table, 0, dataOffset);
  }
  return { file: b.toFile(), builder: b };
}

/** A seeded layout: `steps` of mapping a cluster or leaking one or a table's worth; some entries orphaned afterwards. */
export function randomLeakyImage(seed: number, steps = 80): LeakyImage {
  const rng = new Random(seed);
  const cs = 4 * KiB;
  const tableSize = [1, 2, 4][rng.int(3)]!;
  const b = new ImageBuilder({ clusterSize: cs, tableSize, imageSize: 256 * MiB });
  const perTable = b.entriesPerTable;
  const mapped = new Set<number>();
  for (let step = 0; step < steps; step++) {
    const roll = rng.int(10);
    if (roll === 0) b.append(1);
    else if (roll === 1) b.append(tableSize);
    else {
      const guest = rng.int(20) * perTable + rng.int(perTable);
      if (mapped.has(guest)) continue;
      b.mapData(guest, dataFor(guest, cs));
      mapped.add(guest);
    }
  }
  if (rng.int(2) === 0) b.append(1 + rng.int(3)); // a trailing leak too
  const file = b.toFile();
  for (const guest of mapped) {
    if (rng.int(8) === 0) file.writeSync(new Uint8Array(8), b.tableOf(Math.floor(guest / perTable)) + (guest % perTable) * 8);
  }
  return { file, builder: b };
}
