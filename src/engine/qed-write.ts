// Guest writes (QEMU's qed_aio_write_data): in place where the cluster has data, otherwise
// into freshly allocated clusters with the old content around the new bytes, linked only
// after the data landed [I1]. Allocation of a guest range is serialized by a range lock;
// writers of different clusters run in parallel.
import type { LayerExtent } from './device.js';
import { settleAll } from './device.js';
import { writeWithOldContentAround } from './copy-on-write.js';
import type { QedContext } from './qed-context.js';
import { ensureL2Table, setL2Entries } from './qed-tables.js';

type UnallocatedRun = Extract<LayerExtent, { kind: 'unallocated' | 'zero' }>;

export function writeRange(ctx: QedContext, data: Uint8Array, offset: number): Promise<unknown> {
  // Inside one cached data cluster: written in place, one file call (as the general path
  // would, without its plan; in-place writes take no allocation lock there either).
  const host = ctx.lookup.cachedDataOffset(offset, data.length);
  if (host >= 0) return ctx.file.write(data, host);
  return writeMapped(ctx, data, offset);
}

async function writeMapped(ctx: QedContext, data: Uint8Array, offset: number): Promise<void> {
  const extents = await ctx.lookup.mapRange(offset, data.length);
  if (extents.length === 1 && extents[0]!.kind === 'data') return ctx.file.write(data, extents[0]!.hostOffset);
  await settleAll(extents.map((e) => { // [L2]
    const slice = data.subarray(e.guestOffset - offset, e.guestOffset - offset + e.length);
    return e.kind === 'data' ? ctx.file.write(slice, e.hostOffset) : allocateAndWrite(ctx, slice, e.guestOffset);
  }));
}

/**
 * Write into clusters that have no data yet: lock them, allocate fresh space, write the data
 * with the old content around it, then link. Two writers of one cluster serialize on the lock
 * and the second finds it allocated.
 */
async function allocateAndWrite(ctx: QedContext, data: Uint8Array, guestOffset: number): Promise<void> {
  const cs = ctx.geometry.clusterSize;
  const first = Math.floor(guestOffset / cs);
  const last = Math.floor((guestOffset + data.length - 1) / cs);
  const unlock = await ctx.allocationLocks.lock(first, last);
  let redo = false;
  try {
    ctx.checkNotPoisoned();
    const current = await ctx.lookup.mapRange(guestOffset, data.length);
    if (current.length !== 1 || current[0]!.kind === 'data') {
      redo = true; // someone allocated part of it while we waited; start over outside the lock
    } else {
      await allocateRun(ctx, data, guestOffset, current[0] as UnallocatedRun, first, last);
    }
  } finally {
    unlock();
  }
  if (redo) await writeRange(ctx, data, guestOffset);
}

async function allocateRun(ctx: QedContext, data: Uint8Array, guestOffset: number, old: UnallocatedRun, first: number, last: number): Promise<void> {
  const cs = ctx.geometry.clusterSize;
  const count = last - first + 1;
  const runStart = first * cs;
  const runEnd = (last + 1) * cs;
  const wb = ctx.writeback;
  wb.allocationsInFlight++;
  try {
    const l2Offset = await ensureL2Table(ctx, ctx.geometry.l1Index(guestOffset));
    const host = ctx.allocator.allocate(count);
    const release = await wb.growthGate.enterShared();
    try {
      if (old.kind === 'unallocated' && ctx.hasBacking) {
        await writeWithOldContentAround(ctx.file, (slice, at) => ctx.readBacking(slice, at), cs,
          { data, guestOffset, hostOffset: host, runStart, runEnd });
      } else {
        // [I4] fresh space already reads zeros: write only the new bytes.
        await ctx.file.write(data, host + (guestOffset - runStart));
      }
      wb.noteFileEnd(host + (guestOffset - runStart) + data.length);
    } finally {
      release();
    }
    await setL2Entries(ctx, l2Offset, first, count, (i) => host + i * cs); // [I1] data written first
  } finally {
    wb.allocationsInFlight--;
  }
  ctx.metadataChanged();
}
