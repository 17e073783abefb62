// L1/L2 table entries: classification and the validity rule shared by the engine (which
// refuses to follow a bad entry) and the checker (which counts and repairs it).
import { QED_UNALLOCATED, QED_ZERO_CLUSTER } from './constants.js';

export type EntryKind = 'unallocated' | 'zero' | 'offset';

export function classifyL2Entry(entry: number): EntryKind {
  if (entry === QED_UNALLOCATED) return 'unallocated';
  if (entry === QED_ZERO_CLUSTER) return 'zero';
  return 'offset';
}

/**
 * QEMU's qed_check_cluster_offset: a cluster offset is valid when it is cluster-aligned, at or
 * after the header clusters, and starts before the end of the file.
 */
export function isValidClusterOffset(offset: number, clusterSize: number, headerBytes: number, fileSize: number): boolean {
  return Number.isSafeInteger(offset) && offset % clusterSize === 0 && offset >= headerBytes && offset < fileSize;
}

/** QEMU's qed_check_table_offset: the first and last cluster of the table are both valid. */
export function isValidTableOffset(offset: number, tableBytes: number, clusterSize: number, headerBytes: number, fileSize: number): boolean {
  return isValidClusterOffset(offset, clusterSize, headerBytes, fileSize)
    && isValidClusterOffset(offset + tableBytes - clusterSize, clusterSize, headerBytes, fileSize);
}
