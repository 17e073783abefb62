// Table edits (QEMU's qed-table.c): linking an L2 table into the L1 table and setting runs of
// L2 entries, in the cache only. Nothing here writes to the file; write-back does [I3].
import { entryAt, putEntryAt } from '../base/bytes.js';
import { QED_UNALLOCATED } from '../format/constants.js';
import type { QedContext } from './qed-context.js';
import { ENTRIES_PER_CHUNK, TABLE_CHUNK_BYTES } from './table-cache.js';

/** The L2 table for l1Index, allocating one in fresh space when the L1 entry is empty. */
export async function ensureL2Table(ctx: QedContext, l1Index: number): Promise<number> {
  const chunk = await ctx.cache.acquire(ctx.lookup.l1ChunkOffset(l1Index));
  try {
    const index = l1Index % ENTRIES_PER_CHUNK;
    const existing = entryAt(chunk.view, index);
    if (existing !== QED_UNALLOCATED) return existing;
    // Fresh space reads as an empty table [I4]; nothing is written until writeback.
    const table = ctx.allocator.allocate(ctx.geometry.tableSize);
    putEntryAt(chunk.view, index, table);
    ctx.cache.markDirty(chunk);
    return table;
  } finally {
    ctx.cache.release(chunk);
  }
}

/** Set `count` entries of one L2 table from guest cluster `firstCluster` on; entry i gets valueOf(i). */
export async function setL2Entries(ctx: QedContext, l2Offset: number, firstCluster: number, count: number, valueOf: (i: number) => number): Promise<void> {
  const perTable = ctx.geometry.entriesPerTable;
  for (let i = 0; i < count;) {
    const l2Index = (firstCluster + i) % perTable;
    const chunk = await ctx.cache.acquire(l2Offset + Math.floor(l2Index / ENTRIES_PER_CHUNK) * TABLE_CHUNK_BYTES);
    try {
      for (let k = l2Index % ENTRIES_PER_CHUNK; k < ENTRIES_PER_CHUNK && i < count; k++, i++) {
        putEntryAt(chunk.view, k, valueOf(i));
      }
      ctx.cache.markDirty(chunk);
    } finally {
      ctx.cache.release(chunk);
    }
  }
}
