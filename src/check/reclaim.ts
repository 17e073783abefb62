// Giving leaked space back. QED has no free list, so a leaked cluster in the middle of the
// file can only be reclaimed by moving what lies above it down into it and truncating the
// tail. Compaction runs in rounds; each round rescans the tables and
//   1. picks destinations: every data cluster or L2 table above the first hole moves to the
//      lowest run of holes (as they were when the round began) that lies below it; when
//      nothing can move because an L2 table does not fit in the holes under it, that table
//      is first moved to the end of the file, freeing its clusters to widen the hole;
//   2. writes the copies (moved tables already pointing at the new places of moved data)
//      into space nothing references, and flushes;
//   3. switches the entries that point at moved clusters (each entry points at the old or
//      the new copy, both holding the same bytes), and flushes;
//   4. truncates after the last used cluster, and flushes.
// A crash at any step leaves a consistent image with leaks at worst. Space freed in a round
// is reused only in a later one, after the switch away from it is durable.
import { entryAt, putEntryAt } from '../base/bytes.js';
import type { BlockFile } from '../io/block-file.js';
import { QED_UNALLOCATED, QED_ZERO_CLUSTER } from '../format/constants.js';
import { Geometry } from '../format/geometry.js';
import type { QedHeader } from '../format/header.js';
import { UsedClusters } from './used-clusters.js';

interface Unit { kind: 'data' | 'table'; start: number; entryHost: number; tableHost: number }

interface Layout { used: UsedClusters; units: Unit[] }

/** Enough for any layout seen; a round that moves nothing ends the loop earlier. */
const MAX_ROUNDS = 64;

/** Compact the file until no leaked cluster is left below the last used one; returns the new end. */
export async function reclaimLeaks(file: BlockFile, header: QedHeader): Promise<number> {
  const g = new Geometry(header.clusterSize, header.tableSize, header.headerSize);
  const cs = header.clusterSize;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const layout = await scanLayout(file, header, g);
    const top = Math.max(layout.used.highest(), header.headerSize - 1);
    const holes: number[] = [];
    for (let c = header.headerSize; c < top; c++) if (!layout.used.has(c)) holes.push(c);
    if (holes.length === 0) break;
    const moves = planMoves(layout.units, holes, header.tableSize);
    if (moves.size === 0) {
      // Only a table too wide for the holes under it is in the way: park it at the end.
      const blocked = layout.units.filter((u) => u.kind === 'table' && u.start > holes[0]!).sort((a, b) => a.start - b.start)[0];
      if (!blocked) break;
      moves.set(blocked, Math.ceil((await file.size()) / cs));
    }
    await applyMoves(file, header, g, moves);
    await truncateAfterUsed(file, header, g);
  }
  return truncateAfterUsed(file, header, g);
}

function planMoves(units: Unit[], holes: number[], tableSize: number): Map<Unit, number> {
  const free = new HoleList(holes);
  const moves = new Map<Unit, number>();
  for (const unit of [...units].sort((a, b) => a.start - b.start)) {
    if (unit.start < holes[0]!) continue;
    const destination = free.take(unit.kind === 'table' ? tableSize : 1, unit.start);
    if (destination >= 0) moves.set(unit, destination);
  }
  return moves;
}

async function applyMoves(file: BlockFile, header: QedHeader, g: Geometry, moves: Map<Unit, number>): Promise<void> {
  const cs = header.clusterSize;
  const movedData = new Map<number, number>(); // entry host → new cluster offset
  for (const [unit, dest] of moves) if (unit.kind === 'data') movedData.set(unit.entryHost, dest * cs);
  const movedTables = new Set<number>();
  const buf = new Uint8Array(cs);
  for (const [unit, dest] of moves) {
    if (unit.kind === 'data') {
      await file.read(buf, unit.start * cs);
      await file.write(buf, dest * cs);
      continue;
    }
    const table = new Uint8Array(g.tableBytes);
    await file.read(table, unit.start * cs);
    const view = new DataView(table.buffer);
    for (let i = 0; i < g.entriesPerTable; i++) {
      const moved = movedData.get(unit.start * cs + i * 8);
      if (moved !== undefined) putEntryAt(view, i, moved);
    }
    await file.write(table, dest * cs);
    movedTables.add(unit.start * cs);
  }
  await file.flush();

  const entry = new Uint8Array(8);
  const entryView = new DataView(entry.buffer);
  for (const [unit, dest] of moves) {
    if (unit.kind === 'data' && movedTables.has(unit.tableHost)) continue; // its moved table carries it
    putEntryAt(entryView, 0, dest * cs);
    await file.write(entry, unit.entryHost);
  }
  await file.flush();
}

/** Cut the file after the last used cluster; returns the file's end. */
async function truncateAfterUsed(file: BlockFile, header: QedHeader, g: Geometry): Promise<number> {
  const layout = await scanLayout(file, header, g);
  const end = (Math.max(layout.used.highest(), header.headerSize - 1) + 1) * header.clusterSize;
  if (end < await file.size()) {
    await file.truncate(end);
    await file.flush();
  }
  return Math.min(end, await file.size());
}

/** Every referenced cluster, and each data cluster and L2 table with the entry pointing at it. */
async function scanLayout(file: BlockFile, header: QedHeader, g: Geometry): Promise<Layout> {
  const cs = header.clusterSize;
  const used = new UsedClusters();
  used.markRange(0, header.headerSize);
  used.markRange(header.l1TableOffset / cs, header.tableSize);
  const units: Unit[] = [];
  const l1 = new Uint8Array(g.tableBytes);
  await file.read(l1, header.l1TableOffset);
  const l1View = new DataView(l1.buffer);
  const table = new Uint8Array(g.tableBytes);
  const tableView = new DataView(table.buffer);
  for (let i = 0; i < g.entriesPerTable; i++) {
    const tableOffset = entryAt(l1View, i);
    if (tableOffset === QED_UNALLOCATED || tableOffset % cs !== 0) continue;
    used.markRange(tableOffset / cs, header.tableSize);
    units.push({ kind: 'table', start: tableOffset / cs, entryHost: header.l1TableOffset + i * 8, tableHost: 0 });
    await file.read(table, tableOffset);
    for (let j = 0; j < g.entriesPerTable; j++) {
      const data = entryAt(tableView, j);
      if (data === QED_UNALLOCATED || data === QED_ZERO_CLUSTER || data % cs !== 0) continue;
      used.mark(data / cs);
      units.push({ kind: 'data', start: data / cs, entryHost: tableOffset + j * 8, tableHost: tableOffset });
    }
  }
  return { used, units };
}

/** Leaked clusters in ascending order, handed out lowest first. */
class HoleList {
  private taken = new Set<number>();
  private cursor = 0;
  constructor(private readonly holes: number[]) {}

  /** The lowest start of `size` consecutive free clusters ending at or below `limit`, now taken; -1 if none. */
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
