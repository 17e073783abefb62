// Consistency check and repair of a QED file (QEMU's qed-check.c), independent of the engine:
// it reads tables through the format codecs and the BlockFile only, so it can judge what the
// engine wrote.
//
// Rules: every L1 entry is 0 or the offset of a table that lies inside the file; every L2
// entry is 0, 1 (zero cluster) or the offset of a cluster inside the file; offsets are
// cluster-aligned and after the header; no cluster is referenced twice (the header and the L1
// table count as referenced). Clusters inside the file that nothing references are leaks.
//
// Repair ("fix") goes further than QEMU: invalid entries are cleared, a data cluster
// referenced twice gets a private copy for the second reference (up to `maxCopies`; beyond
// it the reference is cleared), a file whose last cluster is cut short is extended, and
// leaks are given back: by compaction (reclaim.ts), or, for the repair on open, only those
// at the end of the file, by truncating them away.
// The order keeps a crash during repair recoverable: NEED_CHECK stays set until the end;
// copies are flushed before they are linked; tables are flushed before the truncate.
// Tables are read through table-walker.ts, never whole: a table may be 1 GiB.
import { putEntryAt } from '../base/bytes.js';
import { IoError, hex, throwIfAborted } from '../base/errors.js';
import { alignUp } from '../base/math.js';
import type { BlockFile } from '../io/block-file.js';
import { QED_F_NEED_CHECK, QED_UNALLOCATED, QED_ZERO_CLUSTER } from '../format/constants.js';
import { Geometry } from '../format/geometry.js';
import { encodeHeader, type QedHeader } from '../format/header.js';
import { isValidClusterOffset, isValidTableOffset } from '../format/table.js';
import { reclaimLeaks, truncateAt } from './reclaim.js';
import { copyInPieces, walkTable } from './table-walker.js';
import { UsedClusters } from './used-clusters.js';

export interface CheckResult {
  checkErrors: number;
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  imageEndOffset: number;
  /** One line per problem, for the human output and for tests. */
  problems: string[];
  /** With `dryRun`: host offsets of the entries the repair would clear. */
  clearedEntries?: number[];
}

export interface CheckOptions {
  fix?: 'none' | 'leaks' | 'all';
  /**
   * How leaks are repaired: 'compact' moves clusters down into leaked space (reclaim.ts);
   * 'trailing' only cuts the free tail off, which needs no space and moves nothing.
   */
  leakRepair?: 'compact' | 'trailing';
  /** At most this many clusters referenced twice get a private copy; further references are cleared. */
  maxCopies?: number;
  /** On ENOSPC while writing the copies, clear their references instead of failing. */
  clearWhenNoSpace?: boolean;
  /** Stops the walk between L2 tables (AbortError); what was repaired so far stays consistent. */
  signal?: AbortSignal;
  /** Guest bytes whose tables were walked, of the image's size. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Decide as `fix: 'all'` would, write nothing, and report in `clearedEntries` where the
   * entries lie that the repair would clear: what a dirty image opened read-only must not
   * follow, so that it reads as its repair will leave it.
   */
  dryRun?: boolean;
}

interface PrivateCopy { entryHost: number; from: number; to: number }

/** Copies the repair may always make for doubly referenced clusters, however few distinct ones there are. */
const MIN_COPIES = 16;

export async function checkImage(file: BlockFile, header: QedHeader, options: CheckOptions = {}): Promise<CheckResult> {
  if (!options.dryRun) return check(file, header, options, null);
  // The repair's own walk over a file that takes no writes: every decision is the repair's.
  const cleared: number[] = [];
  const result = await check(withoutWrites(file), header, { ...options, fix: 'all', leakRepair: 'trailing', clearWhenNoSpace: false }, cleared);
  return { ...result, clearedEntries: cleared };
}

/** Reads pass through; writes, truncates and flushes do nothing (a dry run of a repair). */
function withoutWrites(file: BlockFile): BlockFile {
  return {
    path: file.path, readOnly: file.readOnly, read: (b, o) => file.read(b, o), size: () => file.size(), close: () => Promise.resolve(),
    write: () => Promise.resolve(), truncate: () => Promise.resolve(), flush: () => Promise.resolve(),
  };
}

/**
 * `cleared` (dry runs) collects the entries cleared for reasons a look at the entry alone
 * cannot tell (a table overlapping clusters in use, a reference over the copy limit): the
 * engine refuses the others itself.
 */
async function check(file: BlockFile, header: QedHeader, options: CheckOptions, cleared: number[] | null): Promise<CheckResult> {
  const fix = options.fix ?? 'none';
  const fixAll = fix === 'all';
  const geometry = new Geometry(header.clusterSize, header.tableSize, header.headerSize);
  const cs = header.clusterSize;
  const result: CheckResult = {
    checkErrors: 0, corruptions: 0, leaks: 0, corruptionsFixed: 0, leaksFixed: 0,
    totalClusters: Math.ceil(header.imageSize / cs), allocatedClusters: 0, fragmentedClusters: 0,
    imageEndOffset: 0, problems: [],
  };

  let fileSize = await file.size();
  // QEMU's view of the file: its length rounded up to a sector, then down to a cluster. A
  // crash can cut the last cluster short; entries into it are corruptions to QEMU. Repair
  // extends the file (the missing bytes read as zeros either way) and counts them as fixed.
  const limitAsFound = qemuFileSize(fileSize, cs);
  if (fixAll && fileSize % cs !== 0) {
    fileSize = alignUp(fileSize, cs);
    await file.truncate(fileSize);
  }
  const fileLimit = qemuFileSize(fileSize, cs);
  const fixedByExtension = (offset: number, length: number, where: string): void => {
    if (offset + length <= limitAsFound) return;
    result.corruptions++;
    result.corruptionsFixed++;
    result.problems.push(`${where}: ${hex(offset)} lay past the end of the file, which was cut short; extended`);
  };
  const used = new UsedClusters();
  used.markRange(0, header.headerSize);
  used.markRange(header.l1TableOffset / cs, header.tableSize);
  /** The L2 tables walked so far: a data entry aimed at one is cleared, never given a copy (see below). */
  const tables = new UsedClusters();
  let appendAt = alignUp(fileSize, cs);
  const copies: PrivateCopy[] = [];
  const copyLimit = options.maxCopies ?? Infinity;
  /**
   * Copies are also bounded by what the image really holds: at most one per distinct data
   * cluster seen so far (and at least MIN_COPIES). One hostile table whose entries all name
   * one cluster would otherwise make repair write a cluster per entry; beyond the bound the
   * extra references are cleared, losing nothing that was not already corrupt.
   */
  let distinctData = 0;

  await walkTable(file, header.l1TableOffset, geometry.tableBytes, async (l1Piece) => {
    for (let i = 0; i < l1Piece.entryCount; i++) {
      const l2Offset = l1Piece.entry(i);
      if (l2Offset === QED_UNALLOCATED) continue;
      throwIfAborted(options.signal, 'check', file.path);
      options.onProgress?.(Math.min(header.imageSize, ((l1Piece.entryHost(i) - header.l1TableOffset) / 8) * geometry.bytesPerL2), header.imageSize);
      const entryHost = l1Piece.entryHost(i);
      if (!isValidTableOffset(l2Offset, geometry.tableBytes, cs, geometry.headerBytes, fileLimit)) {
        result.corruptions++;
        result.problems.push(`L1 entry at ${hex(entryHost)}: invalid L2 table offset ${hex(l2Offset)}`);
        if (fixAll) { l1Piece.setEntry(i, 0); result.corruptionsFixed++; }
        continue;
      }
      fixedByExtension(l2Offset, geometry.tableBytes, `L1 entry at ${hex(entryHost)}`);
      // As QEMU counts it: one corruption per table cluster already in use; the table is skipped.
      // Repair clears the entry (its table cannot be both what it is and what uses it) and
      // leaves the table's clusters unmarked, so that they are reclaimed as leaks: otherwise a
      // dirty image with such an entry could never be opened read-write.
      const overlaps = fixAll ? used.countMarked(l2Offset / cs, header.tableSize) : used.markRangeCountingOverlaps(l2Offset / cs, header.tableSize);
      if (overlaps > 0) {
        result.corruptions += overlaps;
        result.problems.push(`L1 entry at ${hex(entryHost)}: L2 table ${hex(l2Offset)} overlaps ${overlaps} cluster(s) already in use${fixAll ? '; cleared' : ''}`);
        if (fixAll) { l1Piece.setEntry(i, 0); result.corruptionsFixed += overlaps; cleared?.push(entryHost); }
        continue;
      }
      if (fixAll) used.markRange(l2Offset / cs, header.tableSize);
      tables.markRange(l2Offset / cs, header.tableSize);
      let lastData = 0;
      await walkTable(file, l2Offset, geometry.tableBytes, (l2Piece) => {
        for (let j = 0; j < l2Piece.entryCount; j++) {
          const entry = l2Piece.entry(j);
          if (entry === QED_UNALLOCATED || entry === QED_ZERO_CLUSTER) continue;
          const l2EntryHost = l2Piece.entryHost(j);
          result.allocatedClusters++;
          if (lastData !== 0 && entry !== lastData + cs) result.fragmentedClusters++;
          lastData = entry;
          // An entry aimed at the L1 table is never guest data: cleared like an invalid one, not
          // given a copy of the table, so the image reads (zeros or backing data) as a dirty
          // image opened read-only already reads it.
          const aimsAtL1 = entry < header.l1TableOffset + geometry.tableBytes && header.l1TableOffset < entry + cs;
          // Nor at an L2 table walked already: the repair changes that table as it goes, so a
          // copy would hold neither what the guest read before nor the table (the engine cannot
          // tell such an entry by itself: a dry run lists it for dirty read-only opens).
          const aimsAtTable = !aimsAtL1 && Number.isSafeInteger(entry) && entry % cs === 0 && tables.has(entry / cs);
          const valid = !aimsAtL1 && !aimsAtTable && isValidClusterOffset(entry, cs, geometry.headerBytes, fileLimit);
          if (valid) fixedByExtension(entry, cs, `L2 entry at ${hex(l2EntryHost)}`);
          if (valid && used.markRangeCountingOverlaps(entry / cs, 1) === 0) { distinctData++; continue; }
          result.corruptions++;
          if (!valid) {
            result.problems.push(`L2 entry at ${hex(l2EntryHost)}: ${aimsAtL1 ? `cluster ${hex(entry)} is the L1 table` : aimsAtTable ? `cluster ${hex(entry)} is an L2 table` : `invalid cluster offset ${hex(entry)}`}`);
            if (fixAll) { l2Piece.setEntry(j, 0); result.corruptionsFixed++; }
            if (fixAll && aimsAtTable) cleared?.push(l2EntryHost);
            continue;
          }
          const problem = `L2 entry at ${hex(l2EntryHost)}: cluster ${hex(entry)} is referenced more than once`;
          if (!fixAll) { result.problems.push(problem); continue; }
          if (copies.length < Math.min(copyLimit, Math.max(MIN_COPIES, distinctData))) {
            // A private copy for this reference; linked only after the copy is durable.
            result.problems.push(problem);
            copies.push({ entryHost: l2EntryHost, from: entry, to: appendAt });
            used.markRange(appendAt / cs, 1);
            appendAt += cs;
          } else {
            result.problems.push(`${problem}; cleared (over the limit on copies)`);
            l2Piece.setEntry(j, 0);
            cleared?.push(l2EntryHost);
            result.corruptionsFixed++;
          }
        }
      });
    }
  });

  options.onProgress?.(header.imageSize, header.imageSize);

  if (copies.length > 0) {
    const copied = await writeCopies(file, copies, cs, options.clearWhenNoSpace === true);
    for (const copy of copies) {
      if (!copied) result.problems.push(`L2 entry at ${hex(copy.entryHost)}: cleared (no space for a copy of ${hex(copy.from)})`);
      result.corruptionsFixed++;
    }
    if (copied) fileSize = Math.max(fileSize, appendAt);
    else for (const copy of copies) used.unmark(copy.to / cs);
  }

  const totalFileClusters = qemuFileSize(fileSize, cs) / cs;
  result.leaks = Math.max(0, totalFileClusters - used.countBelow(totalFileClusters));
  const usedEnd = (used.highest() + 1) * cs;
  result.imageEndOffset = usedEnd;

  const corruptionsLeft = result.corruptions - result.corruptionsFixed;
  if ((fix === 'leaks' || fixAll) && result.leaks > 0 && corruptionsLeft === 0) {
    // Entries fixed above must be durable before anything moves into the space they freed [engine I4].
    await file.flush();
    const end = (options.leakRepair ?? 'compact') === 'compact' ? await reclaimLeaks(file, header) : await truncateTrailingLeaks(file, usedEnd);
    const remaining = Math.max(0, qemuFileSize(end, cs) / cs - used.total);
    result.leaksFixed += result.leaks - remaining;
    result.leaks = remaining;
    result.imageEndOffset = end;
  }
  if (result.corruptionsFixed > 0) result.corruptions -= result.corruptionsFixed;

  if (fix !== 'none' && result.corruptions === 0 && result.checkErrors === 0 && (header.features & QED_F_NEED_CHECK) !== 0n) {
    await file.flush();
    await file.write(encodeHeader({ ...header, features: header.features & ~QED_F_NEED_CHECK }), 0);
    await file.flush();
  } else if (fix !== 'none') {
    await file.flush();
  }
  return result;
}

/**
 * Write the private copies, flush, then link each to its reference. With `clearWhenNoSpace`,
 * a disk too full for them gets none: the space they took is cut off again and each of their
 * references is cleared instead (returns false).
 */
async function writeCopies(file: BlockFile, copies: readonly PrivateCopy[], cs: number, clearWhenNoSpace: boolean): Promise<boolean> {
  const endBefore = await file.size();
  let copied = true;
  try {
    for (const copy of copies) await copyInPieces(file, copy.from, copy.to, cs);
    await file.flush();
  } catch (err) {
    if (!clearWhenNoSpace || !(err instanceof IoError) || err.errno !== 'ENOSPC') throw err;
    await truncateTrailingLeaks(file, endBefore);
    copied = false;
  }
  const entry = new Uint8Array(8);
  for (const copy of copies) {
    putEntryAt(view(entry), 0, copied ? copy.to : QED_UNALLOCATED);
    await file.write(entry, copy.entryHost);
  }
  return copied;
}

/** Cut the free tail after `usedEnd` (bytes), durably; returns the file's end. */
async function truncateTrailingLeaks(file: BlockFile, usedEnd: number): Promise<number> {
  await truncateAt(file, usedEnd);
  return file.size();
}

/** bdrv_getlength rounds up to a sector; qed.c then rounds down to a cluster. */
export function qemuFileSize(length: number, clusterSize: number): number {
  const sectors = alignUp(length, 512);
  return sectors - (sectors % clusterSize);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
