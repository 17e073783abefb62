// Address arithmetic of one image: where a guest offset's L1 and L2 entries live.
import { QED_MAX_TABLE_SIZE } from './constants.js';

export class Geometry {
  readonly entriesPerTable: number;
  readonly tableBytes: number;
  /** Guest bytes covered by one L2 table (one L1 entry). */
  readonly bytesPerL2: number;
  readonly capacity: number;
  readonly headerBytes: number;

  constructor(readonly clusterSize: number, readonly tableSize: number, readonly headerSize: number) {
    this.tableBytes = tableSize * clusterSize;
    this.entriesPerTable = this.tableBytes / 8;
    this.bytesPerL2 = this.entriesPerTable * clusterSize;
    this.capacity = this.entriesPerTable * this.bytesPerL2;
    this.headerBytes = headerSize * clusterSize;
  }

  l1Index(guestOffset: number): number { return Math.floor(guestOffset / this.bytesPerL2); }
  l2Index(guestOffset: number): number { return Math.floor(guestOffset / this.clusterSize) % this.entriesPerTable; }
  clusterStart(guestOffset: number): number { return guestOffset - (guestOffset % this.clusterSize); }
  clusterCount(bytes: number): number { return Math.ceil(bytes / this.clusterSize); }
  /** The end of the L2 table's coverage that contains guestOffset. */
  l2CoverageEnd(guestOffset: number): number { return (this.l1Index(guestOffset) + 1) * this.bytesPerL2; }
}

/** The capacity an image of this geometry could have, for error messages and create. */
export function capacityOf(clusterSize: number, tableSize: number): number {
  return new Geometry(clusterSize, Math.min(tableSize, QED_MAX_TABLE_SIZE), 1).capacity;
}
