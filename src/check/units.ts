// The used space of a consistent image, as the units leak reclaim may move: each L2 table
// (table_size contiguous clusters, named by an L1 entry) and each data cluster (named by an
// L2 entry); the header and the L1 table are units too, but fixed in place. Kept in columns
// of typed arrays (25 bytes a unit), so memory follows the clusters in use, not the file size.
// The data units of a table follow it directly, in the order of their entries.
import type { BlockFile } from '../io/block-file.js';
import { alignUp } from '../base/math.js';
import { QED_UNALLOCATED, QED_ZERO_CLUSTER } from '../format/constants.js';
import type { Geometry } from '../format/geometry.js';
import type { QedHeader } from '../format/header.js';
import { isValidClusterOffset, isValidTableOffset } from '../format/table.js';
import { walkTable } from './table-walker.js';

export type UnitKind = 'fixed' | 'table' | 'data';
const KINDS: readonly UnitKind[] = ['fixed', 'table', 'data'];

export class UnitList {
  count = 0;
  /** First cluster index. */
  first = new Float64Array(64);
  clusters = new Uint32Array(64);
  /** Byte offset of the entry naming the unit (-1 for fixed units). */
  entryHost = new Float64Array(64);
  /** For a data unit, the index of its table; -1 otherwise. */
  owner = new Int32Array(64);
  private kinds = new Uint8Array(64);

  add(kind: UnitKind, first: number, clusters: number, entryHost: number, owner: number): number {
    if (this.count === this.first.length) this.grow();
    const i = this.count++;
    this.first[i] = first;
    this.clusters[i] = clusters;
    this.entryHost[i] = entryHost;
    this.owner[i] = owner;
    this.kinds[i] = KINDS.indexOf(kind);
    return i;
  }

  kind(i: number): UnitKind { return KINDS[this.kinds[i]!]!; }
  end(i: number): number { return this.first[i]! + this.clusters[i]!; }

  /** Unit indexes in ascending order of first cluster. */
  sortedByFirst(): Uint32Array {
    const order = new Uint32Array(this.count);
    for (let i = 0; i < this.count; i++) order[i] = i;
    const first = this.first;
    return order.sort((a, b) => first[a]! - first[b]!);
  }

  private grow(): void {
    const size = this.first.length * 2;
    const widen = <T extends Float64Array | Uint32Array | Int32Array | Uint8Array>(old: T, next: T): T => { next.set(old); return next; };
    this.first = widen(this.first, new Float64Array(size));
    this.clusters = widen(this.clusters, new Uint32Array(size));
    this.entryHost = widen(this.entryHost, new Float64Array(size));
    this.owner = widen(this.owner, new Int32Array(size));
    this.kinds = widen(this.kinds, new Uint8Array(size));
  }
}

export interface Layout {
  units: UnitList;
  /** `units` in ascending order of first cluster; no two overlap. */
  order: Uint32Array;
  /** The file's length in clusters, a cut-short last cluster counted whole. */
  fileClusters: number;
}

/**
 * Read the tables (in bounded pieces) into units. Null when they are not what a consistent
 * image holds (an entry misaligned or outside the file, two units sharing a cluster): the
 * caller then moves nothing, since a move would trust entries the checker did not.
 */
export async function scanLayout(file: BlockFile, header: QedHeader, g: Geometry): Promise<Layout | null> {
  const cs = header.clusterSize;
  const fileClusters = alignUp(await file.size(), cs) / cs;
  const limit = fileClusters * cs;
  const units = new UnitList();
  units.add('fixed', 0, header.headerSize, -1, -1);
  units.add('fixed', header.l1TableOffset / cs, header.tableSize, -1, -1);
  let consistent = true;
  await walkTable(file, header.l1TableOffset, g.tableBytes, async (l1Piece) => {
    for (let i = 0; consistent && i < l1Piece.entryCount; i++) {
      const tableOffset = l1Piece.entry(i);
      if (tableOffset === QED_UNALLOCATED) continue;
      if (!isValidTableOffset(tableOffset, g.tableBytes, cs, g.headerBytes, limit)) { consistent = false; break; }
      const table = units.add('table', tableOffset / cs, header.tableSize, l1Piece.entryHost(i), -1);
      await walkTable(file, tableOffset, g.tableBytes, (l2Piece) => {
        for (let j = 0; j < l2Piece.entryCount; j++) {
          const data = l2Piece.entry(j);
          if (data === QED_UNALLOCATED || data === QED_ZERO_CLUSTER) continue;
          if (!isValidClusterOffset(data, cs, g.headerBytes, limit)) { consistent = false; return; }
          units.add('data', data / cs, 1, l2Piece.entryHost(j), table);
        }
      });
    }
  });
  if (!consistent) return null;
  const order = units.sortedByFirst();
  let usedTo = 0;
  for (const unit of order) {
    if (units.first[unit]! < usedTo) return null;
    usedTo = units.end(unit);
  }
  return { units, order, fileClusters };
}
