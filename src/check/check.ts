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
// referenced twice gets a private copy for the second reference, a file whose last cluster
// is cut short is extended, and leaked clusters at the end of the file are truncated away.
// The order keeps a crash during repair recoverable: NEED_CHECK stays set until the end;
// copies are flushed before they are linked; tables are flushed before the truncate.
import { entryAt, putEntryAt } from '../base/bytes.js';
import { hex } from '../base/errors.js';
import { alignUp } from '../base/math.js';
import type { BlockFile } from '../io/block-file.js';
import { QED_F_NEED_CHECK, QED_UNALLOCATED, QED_ZERO_CLUSTER } from '../format/constants.js';
import { Geometry } from '../format/geometry.js';
import { encodeHeader, type QedHeader } from '../format/header.js';
import { isValidClusterOffset, isValidTableOffset } from '../format/table.js';
import { reclaimLeaks } from './reclaim.js';
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
}

export interface CheckOptions {
  fix?: 'none' | 'leaks' | 'all';
}

/** Table bytes are read and written in pieces of this size so memory stays bounded. */
const PIECE_BYTES = 1024 * 1024;

export async function checkImage(file: BlockFile, header: QedHeader, options: CheckOptions = {}): Promise<CheckResult> {
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
  let appendAt = alignUp(fileSize, cs);
  const copies: Array<{ entryHost: number; from: number; to: number }> = [];

  await forEachPiece(file, header.l1TableOffset, geometry.tableBytes, async (l1Piece, l1PieceOffset) => {
    const l1View = view(l1Piece);
    let l1Changed = false;
    for (let i = 0; i < l1Piece.length / 8; i++) {
      const l2Offset = entryAt(l1View, i);
      if (l2Offset === QED_UNALLOCATED) continue;
      const entryHost = l1PieceOffset + i * 8;
      if (!isValidTableOffset(l2Offset, geometry.tableBytes, cs, geometry.headerBytes, fileLimit)) {
        result.corruptions++;
        result.problems.push(`L1 entry at ${hex(entryHost)}: invalid L2 table offset ${hex(l2Offset)}`);
        if (fixAll) { putEntryAt(l1View, i, 0); l1Changed = true; result.corruptionsFixed++; }
        continue;
      }
      fixedByExtension(l2Offset, geometry.tableBytes, `L1 entry at ${hex(entryHost)}`);
      // As QEMU counts it: one corruption per table cluster already in use; the table is skipped.
      const overlaps = used.markRangeCountingOverlaps(l2Offset / cs, header.tableSize);
      if (overlaps > 0) {
        result.corruptions += overlaps;
        result.problems.push(`L1 entry at ${hex(entryHost)}: L2 table ${hex(l2Offset)} overlaps ${overlaps} cluster(s) already in use`);
        continue;
      }
      let lastData = 0;
      await forEachPiece(file, l2Offset, geometry.tableBytes, async (l2Piece, l2PieceOffset) => {
        const l2View = view(l2Piece);
        let l2Changed = false;
        for (let j = 0; j < l2Piece.length / 8; j++) {
          const entry = entryAt(l2View, j);
          if (entry === QED_UNALLOCATED || entry === QED_ZERO_CLUSTER) continue;
          const l2EntryHost = l2PieceOffset + j * 8;
          result.allocatedClusters++;
          if (lastData !== 0 && entry !== lastData + cs) result.fragmentedClusters++;
          lastData = entry;
          const valid = isValidClusterOffset(entry, cs, geometry.headerBytes, fileLimit);
          if (valid) fixedByExtension(entry, cs, `L2 entry at ${hex(l2EntryHost)}`);
          if (valid && used.markRangeCountingOverlaps(entry / cs, 1) === 0) continue;
          result.corruptions++;
          if (!valid) {
            result.problems.push(`L2 entry at ${hex(l2EntryHost)}: invalid cluster offset ${hex(entry)}`);
            if (fixAll) { putEntryAt(l2View, j, 0); l2Changed = true; result.corruptionsFixed++; }
          } else {
            result.problems.push(`L2 entry at ${hex(l2EntryHost)}: cluster ${hex(entry)} is referenced more than once`);
            if (fixAll) {
              // A private copy for this reference; linked only after the copy is durable.
              copies.push({ entryHost: l2EntryHost, from: entry, to: appendAt });
              used.markRange(appendAt / cs, 1);
              appendAt += cs;
            }
          }
        }
        if (l2Changed) await file.write(l2Piece, l2PieceOffset);
      });
    }
    if (l1Changed) await file.write(l1Piece, l1PieceOffset);
  });

  if (copies.length > 0) {
    const buf = new Uint8Array(cs);
    for (const copy of copies) {
      await file.read(buf, copy.from);
      await file.write(buf, copy.to);
    }
    await file.flush();
    const entry = new Uint8Array(8);
    for (const copy of copies) {
      putEntryAt(view(entry), 0, copy.to);
      await file.write(entry, copy.entryHost);
      result.corruptionsFixed++;
    }
    fileSize = Math.max(fileSize, appendAt);
  }

  const totalFileClusters = qemuFileSize(fileSize, cs) / cs;
  result.leaks = Math.max(0, totalFileClusters - used.countBelow(totalFileClusters));
  const usedEnd = (used.highest() + 1) * cs;
  result.imageEndOffset = usedEnd;

  const corruptionsLeft = result.corruptions - result.corruptionsFixed;
  if ((fix === 'leaks' || fixAll) && result.leaks > 0 && corruptionsLeft === 0) {
    // Entries fixed above must be durable before anything moves into the space they freed [engine I4].
    await file.flush();
    const end = await reclaimLeaks(file, header);
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

async function forEachPiece(file: BlockFile, offset: number, length: number, visit: (piece: Uint8Array, pieceOffset: number) => Promise<void>): Promise<void> {
  for (let done = 0; done < length; done += PIECE_BYTES) {
    const piece = new Uint8Array(Math.min(PIECE_BYTES, length - done));
    await file.read(piece, offset + done);
    await visit(piece, offset + done);
  }
}

/** bdrv_getlength rounds up to a sector; qed.c then rounds down to a cluster. */
export function qemuFileSize(length: number, clusterSize: number): number {
  const sectors = alignUp(length, 512);
  return sectors - (sectors % clusterSize);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
