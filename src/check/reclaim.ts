// Giving leaked space back. QED has no free list, so a leaked cluster in the middle of the
// file can only be reclaimed by moving what lies above it down into it and truncating the
// tail. Destinations are chosen from the top down: a data cluster goes to the lowest hole, an
// L2 table to the lowest run of table_size holes. The order keeps every crash harmless:
//   1. copies (data, and moved L2 tables already pointing at moved data) are written into
//      leaked space, which nothing references, and flushed;
//   2. the entries that point at the moved clusters are switched and flushed (each entry
//      points at old or new: both hold the same bytes; the other becomes a leak);
//   3. the file is truncated after the last used cluster and flushed.
import { entryAt, putEntryAt } from '../base/bytes.js';
import type { BlockFile } from '../io/block-file.js';
import { QED_UNALLOCATED, QED_ZERO_CLUSTER } from '../format/constants.js';
import { Geometry } from '../format/geometry.js';
import type { QedHeader } from '../format/header.js';
import type { UsedClusters } from './used-clusters.js';

interface Unit { kind: 'data' | 'table'; start: number; entryHost: number; tableHost: number }

/** Move clusters into interior holes and truncate; returns how many leaked clusters were given back. */
export async function reclaimLeaks(file: BlockFile, header: QedHeader, used: UsedClusters, fileClusters: number): Promise<number> {
  const g = new Geometry(header.clusterSize, header.tableSize, header.headerSize);
  const cs = header.clusterSize;
  const holes: number[] = [];
  // Holes above the highest used cluster are the tail: truncated, never enumerated one by one.
  const usedLimit = Math.min(fileClusters, used.highest() + 1);
  for (let c = header.headerSize; c < usedLimit; c++) if (!used.has(c)) holes.push(c);
  if (holes.length === 0 && usedLimit >= fileClusters) return 0;
  const firstHole = holes[0] ?? usedLimit;
  const units = (await unitsAbove(file, header, g, firstHole)).sort((a, b) => b.start - a.start);
  const free = new HoleList(holes);
  const moves = new Map<Unit, number>();
  for (const unit of units) {
    const size = unit.kind === 'table' ? header.tableSize : 1;
    const destination = free.take(size, unit.start);
    if (destination < 0) break; // nothing below fits: everything under it stays where it is
    moves.set(unit, destination);
  }
  if (moves.size === 0 && used.highest() + 1 >= fileClusters) return 0;

  // 1. Copies into leaked space. Moved tables carry their moved data's new offsets.
  const movedData = new Map<number, number>(); // old entry host → new cluster offset
  for (const [unit, dest] of moves) if (unit.kind === 'data') movedData.set(unit.entryHost, dest * cs);
  const buf = new Uint8Array(cs);
  for (const [unit, dest] of moves) {
    if (unit.kind !== 'data') continue;
    await file.read(buf, unit.start * cs);
    await file.write(buf, dest * cs);
  }
  const movedTables = new Map<number, number>(); // old table offset → new
  for (const [unit, dest] of moves) {
    if (unit.kind !== 'table') continue;
    const table = new Uint8Array(g.tableBytes);
    await file.read(table, unit.start * cs);
    const view = new DataView(table.buffer);
    for (let i = 0; i < g.entriesPerTable; i++) {
      const moved = movedData.get(unit.start * cs + i * 8);
      if (moved !== undefined) putEntryAt(view, i, moved);
    }
    await file.write(table, dest * cs);
    movedTables.set(unit.start * cs, dest * cs);
  }
  await file.flush();

  // 2. Switch the entries: data entries in tables that stay, then L1 entries of moved tables.
  const entry = new Uint8Array(8);
  const entryView = new DataView(entry.buffer);
  for (const [unit, dest] of moves) {
    if (unit.kind === 'data' && !movedTables.has(unit.tableHost)) {
      putEntryAt(entryView, 0, dest * cs);
      await file.write(entry, unit.entryHost);
    }
  }
  for (const [unit, dest] of moves) {
    if (unit.kind === 'table') {
      putEntryAt(entryView, 0, dest * cs);
      await file.write(entry, unit.entryHost);
    }
  }
  await file.flush();

  // 3. Truncate after the highest cluster still in use.
  for (const [unit, dest] of moves) {
    const size = unit.kind === 'table' ? header.tableSize : 1;
    for (let i = 0; i < size; i++) { used.unmark(unit.start + i); used.mark(dest + i); }
  }
  const top = Math.max(used.highest(), header.headerSize - 1);
  const newEnd = (top + 1) * cs;
  const before = await file.size();
  if (newEnd < before) {
    await file.truncate(newEnd);
    await file.flush();
  }
  return Math.max(0, Math.floor(before / cs) - (top + 1));
}

/** Every data cluster and L2 table starting above `threshold`, with the entry that points at it. */
async function unitsAbove(file: BlockFile, header: QedHeader, g: Geometry, threshold: number): Promise<Unit[]> {
  const cs = header.clusterSize;
  const units: Unit[] = [];
  const l1 = new Uint8Array(g.tableBytes);
  await file.read(l1, header.l1TableOffset);
  const l1View = new DataView(l1.buffer);
  const table = new Uint8Array(g.tableBytes);
  const tableView = new DataView(table.buffer);
  for (let i = 0; i < g.entriesPerTable; i++) {
    const tableOffset = entryAt(l1View, i);
    if (tableOffset === QED_UNALLOCATED || tableOffset % cs !== 0) continue;
    if (tableOffset / cs > threshold) units.push({ kind: 'table', start: tableOffset / cs, entryHost: header.l1TableOffset + i * 8, tableHost: 0 });
    await file.read(table, tableOffset);
    for (let j = 0; j < g.entriesPerTable; j++) {
      const data = entryAt(tableView, j);
      if (data === QED_UNALLOCATED || data === QED_ZERO_CLUSTER || data % cs !== 0) continue;
      if (data / cs > threshold) units.push({ kind: 'data', start: data / cs, entryHost: tableOffset + j * 8, tableHost: tableOffset });
    }
  }
  return units;
}

/** Leaked clusters in ascending order, handed out lowest first. */
class HoleList {
  private taken = new Set<number>();
  private cursor = 0;
  constructor(private readonly holes: number[]) {}

  /** The lowest start of `size` consecutive free clusters below `limit`, now taken; -1 if none. */
  take(size: number, limit: number): number {
    while (this.cursor < this.holes.length && this.taken.has(this.holes[this.cursor]!)) this.cursor++;
    for (let i = this.cursor; i < this.holes.length; i++) {
      const start = this.holes[i]!;
      if (start + size > limit) return -1;
      let run = true;
      for (let k = 0; run && k < size; k++) run = this.holes[i + k] === start + k && !this.taken.has(start + k);
      if (!run) continue;
      for (let k = 0; k < size; k++) this.taken.add(start + k);
      return start;
    }
    return -1;
  }
}
