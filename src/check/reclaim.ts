// Giving leaked space back (`qed check -r leaks|all`). QED has no free list, so a leaked
// cluster in the middle of the file can only be reclaimed by moving what lies above it down
// into it and truncating the tail. Compaction works from the top, in rounds; a round
//   1. scans the tables (units.ts) and takes the leaked runs below the last used cluster as
//      they are when the round begins; then, highest unit first, moves each data cluster or
//      L2 table above a run into the lowest run below it that is long enough;
//   2. writes the copies (a moved table already pointing at the new places of its moved
//      data) into that unreferenced space, and flushes;
//   3. switches the entries naming moved units (each entry names the old or the new copy,
//      both holding the same bytes), and flushes;
//   4. truncates after the last used cluster, and flushes.
// A crash at any step leaves a consistent image with leaks at worst. Space a round frees is
// reused only by a later round, after the switch away from it is durable.
//
// One round reclaims every leaked cluster for which a unit above it fits. What it cannot
// fill is a run shorter than table_size under a wall of L2 tables (no data left above the
// lowest run, or it would have moved): then one round parks every table above that run past
// the end of the file (the same four steps), which frees their space into one long run, and
// the next round brings them back down packed.
import { putEntryAt } from '../base/bytes.js';
import type { BlockFile } from '../io/block-file.js';
import { Geometry } from '../format/geometry.js';
import type { QedHeader } from '../format/header.js';
import { FreeRuns } from './free-runs.js';
import { copyInPieces } from './table-walker.js';
import { scanLayout, type Layout } from './units.js';

/** A bound on rounds for layouts no one foresaw; a round that gains nothing ends it sooner. */
const MAX_ROUNDS = 32;
/** Rounds in a row without a lower end (a park and its return are two). */
const MAX_ROUNDS_WITHOUT_GAIN = 3;

/**
 * Where each unit goes this round (-1: stays), where the used space then ends, and how many
 * clusters below that end will still be leaked (0: no need to scan again), in clusters.
 */
interface Plan { destination: Float64Array; moves: number; endCluster: number; leakedAfter: number }

/** Compact the file until no leaked cluster is left below the last used one; returns the new end. */
export async function reclaimLeaks(file: BlockFile, header: QedHeader): Promise<number> {
  const g = new Geometry(header.clusterSize, header.tableSize, header.headerSize);
  let bestEnd = Infinity;
  let roundsWithoutGain = 0;
  let parkedLastRound = false;
  for (let round = 0; round < MAX_ROUNDS && roundsWithoutGain < MAX_ROUNDS_WITHOUT_GAIN; round++) {
    const layout = await scanLayout(file, header, g);
    if (!layout) break;
    let plan = planCompaction(layout);
    const stuck: boolean = plan.moves === 0 && !parkedLastRound;
    if (stuck) plan = planParking(layout);
    parkedLastRound = stuck && plan.moves > 0;
    if (plan.moves > 0) await applyMoves(file, header, g, layout, plan);
    await truncateAt(file, plan.endCluster * header.clusterSize);
    if (plan.moves === 0 || plan.leakedAfter === 0) break;
    if (plan.endCluster < bestEnd) { bestEnd = plan.endCluster; roundsWithoutGain = 0; } else roundsWithoutGain++;
  }
  return file.size();
}

/** Highest unit first, each into the lowest leaked run below it that holds it. */
function planCompaction(layout: Layout): Plan {
  const { units, order } = layout;
  const free = leakedRuns(layout);
  const destination = new Float64Array(units.count).fill(-1);
  let moves = 0;
  const lowestLeak = free.lowest();
  for (let k = order.length - 1; k >= 0; k--) {
    const unit = order[k]!;
    if (units.first[unit]! < lowestLeak) break; // nothing lower can move down
    if (units.kind(unit) === 'fixed') continue;
    const to = free.take(units.clusters[unit]!, units.first[unit]!);
    if (to >= 0) { destination[unit] = to; moves++; }
  }
  return planOf(layout, destination, moves, free);
}

/** Every L2 table above the lowest leaked run, moved past the end of the file. */
function planParking(layout: Layout): Plan {
  const { units, order } = layout;
  const lowestLeak = leakedRuns(layout).lowest();
  const destination = new Float64Array(units.count).fill(-1);
  let moves = 0;
  let next = layout.fileClusters;
  for (const unit of order) {
    if (units.first[unit]! < lowestLeak || units.kind(unit) !== 'table') continue;
    destination[unit] = next;
    next += units.clusters[unit]!;
    moves++;
  }
  return planOf(layout, destination, moves, leakedRuns(layout));
}

/** The gaps between used units, up to the last one. */
function leakedRuns(layout: Layout): FreeRuns {
  const { units, order } = layout;
  const starts: number[] = [];
  const lengths: number[] = [];
  let usedTo = 0;
  for (const unit of order) {
    const first = units.first[unit]!;
    if (first > usedTo) { starts.push(usedTo); lengths.push(first - usedTo); }
    usedTo = Math.max(usedTo, units.end(unit));
  }
  return new FreeRuns(Float64Array.from(starts), Float64Array.from(lengths));
}

/** `free`: the leaked runs not taken by a move. The places moved units leave are leaked too. */
function planOf(layout: Layout, destination: Float64Array, moves: number, free: FreeRuns): Plan {
  const { units } = layout;
  let endCluster = 0;
  for (let i = 0; i < units.count; i++) {
    const first = destination[i]! >= 0 ? destination[i]! : units.first[i]!;
    endCluster = Math.max(endCluster, first + units.clusters[i]!);
  }
  let leakedAfter = free.clustersBelow(endCluster);
  for (let i = 0; i < units.count; i++) {
    if (destination[i]! >= 0) leakedAfter += Math.max(0, Math.min(units.end(i), endCluster) - units.first[i]!);
  }
  return { destination, moves, endCluster, leakedAfter };
}

async function applyMoves(file: BlockFile, header: QedHeader, g: Geometry, layout: Layout, plan: Plan): Promise<void> {
  const { units } = layout;
  const cs = header.clusterSize;
  const { destination } = plan;
  // Step 2: the copies, into space no entry names.
  for (let unit = 0; unit < units.count; unit++) {
    if (destination[unit]! < 0) continue;
    const from = units.first[unit]! * cs;
    const to = destination[unit]! * cs;
    if (units.kind(unit) === 'data') { await copyInPieces(file, from, to, cs); continue; }
    // The table's data units follow it, in entry order; a moved one is renamed in the copy.
    let child = unit + 1;
    await copyInPieces(file, from, to, g.tableBytes, (piece) => {
      const pieceEnd = piece.entryHost(piece.entryCount);
      for (; child < units.count && units.owner[child] === unit && units.entryHost[child]! < pieceEnd; child++) {
        if (destination[child]! >= 0) piece.setEntry((units.entryHost[child]! - piece.hostOffset) / 8, destination[child]! * cs);
      }
    });
  }
  await file.flush();
  // Step 3: the switch. Data under a moved table is named by that table's copy already.
  const entry = new Uint8Array(8);
  const entryView = new DataView(entry.buffer);
  for (let unit = 0; unit < units.count; unit++) {
    if (destination[unit]! < 0) continue;
    const owner = units.owner[unit]!;
    if (owner >= 0 && destination[owner]! >= 0) continue;
    putEntryAt(entryView, 0, destination[unit]! * cs);
    await file.write(entry, units.entryHost[unit]!);
  }
  await file.flush();
}

/** Step 4: cut the file at `end` if it is longer, durably. */
export async function truncateAt(file: BlockFile, end: number): Promise<void> {
  if (end >= await file.size()) return;
  await file.truncate(end);
  await file.flush();
}
