// `rebase`: give an overlay a new backing file. Safe mode first copies into the overlay every
// range it does not hold itself where the old and new backing differ, so the guest sees the
// same bytes; only then is the header changed. `-u` only changes the header; an empty new
// name flattens the image (everything the old backing showed is copied in).
import { UsageError, throwIfAborted } from '../base/errors.js';
import type { FileStore } from '../io/block-file.js';
import { defaultFileStore } from '../io/default-store.js';
import type { ImageFormat } from '../format/probe.js';
import type { BlockDevice } from '../engine/device.js';
import { changeBackingFile } from '../engine/header-update.js';
import { chainBlockStatus } from '../engine/chain-status.js';
import { openImage, type BackingPolicy } from '../engine/open.js';
import { QedImage } from '../engine/qed-image.js';
import { withQedFile } from './chain-files.js';
import { currentBackingPolicy, openDevice } from './open.js';
import { runPool } from './pool.js';
import { sameBytes } from './zero-detect.js';
import { piecesOf } from './walk.js';

export interface RebaseOptions {
  format?: ImageFormat;
  backingFormat?: ImageFormat;
  unsafe?: boolean;
  store?: FileStore;
  onProgress?: (done: number, total: number) => void;
  /** Stops the copy between pieces (AbortError), before the header changes: the image keeps its old backing file. */
  signal?: AbortSignal;
  /** Which backing files may be followed (default: the process-wide policy, else any). */
  backingPolicy?: BackingPolicy;
}

const WINDOW = 256 * 1024 * 1024;

export async function rebaseImage(path: string, newBacking: string, options: RebaseOptions = {}): Promise<void> {
  const store = options.store ?? defaultFileStore();
  let backingFormat = options.backingFormat;
  if (newBacking !== '' && backingFormat === undefined) {
    // Record raw as raw (never probed later); a missing file under -u keeps no format.
    const probe = await openImage(store.resolveBacking(path, newBacking), { store, readOnly: true, noBacking: true, backingPolicy: options.backingPolicy ?? currentBackingPolicy() }).catch((err: unknown) => {
      if (options.unsafe) return null;
      throw err;
    });
    if (probe) { backingFormat = probe.format; await probe.close(); }
  }
  if (!options.unsafe) await copyDifferences(path, newBacking, backingFormat, store, options);
  await withQedFile(path, store, ({ file, header }) =>
    changeBackingFile(file, header, { backingName: newBacking === '' ? null : newBacking, backingFormat }));
}

async function copyDifferences(path: string, newBacking: string, backingFormat: ImageFormat | undefined, store: FileStore, options: RebaseOptions): Promise<void> {
  const overlay = await openDevice(path, { format: options.format, store, backingPolicy: options.backingPolicy });
  try {
    if (!(overlay instanceof QedImage)) throw new UsageError('rebase needs a QED image', { path });
    const target = newBacking === '' ? null : await openImage(store.resolveBacking(path, newBacking), { store, readOnly: true, format: backingFormat, backingPolicy: options.backingPolicy ?? currentBackingPolicy() });
    try {
      let quiet = true;
      for (let windowStart = 0; windowStart < overlay.size;) {
        if (quiet) {
          // Where both backing files read zeros nothing can differ: skip it whole, however long.
          const bothZero = Math.min(await zerosEnd(overlay.backing, windowStart, overlay.size), await zerosEnd(target, windowStart, overlay.size));
          if (bothZero > windowStart) {
            windowStart = bothZero;
            options.onProgress?.(windowStart, overlay.size);
            continue;
          }
        }
        const extents = await overlay.layerStatus(windowStart, Math.min(WINDOW, overlay.size - windowStart));
        const candidates = await differingCandidates(extents, overlay.backing, target);
        const pieces = candidates.flatMap((r) => [...piecesOf(r.offset, r.length, overlay.clusterSize)]);
        // Pieces are compared eight at a time but written in guest order, one after the other:
        // the overlay then allocates its clusters in guest order, as qemu-img's sequential
        // rebase does (host-contiguous runs, the map qemu-iotests 024 compares).
        const written = pieces.map(() => deferred());
        await runPool(pieces.length, 8, async (i) => {
          try {
            throwIfAborted(options.signal, 'rebase', path);
            await copyIfDifferent(overlay, target, { offset: pieces[i]!.start, length: pieces[i]!.length }, i === 0 ? null : written[i - 1]!.promise);
          } finally {
            written[i]!.resolve();
          }
        });
        // Only after a window with nothing to copy is it worth asking whether a stretch of zeros begins.
        quiet = pieces.length === 0;
        windowStart = Math.min(overlay.size, windowStart + WINDOW);
        options.onProgress?.(windowStart, overlay.size);
      }
      await overlay.flush();
    } finally {
      await target?.close();
    }
  } finally {
    await overlay.close();
  }
}

/**
 * The unallocated parts of the overlay where the old or the new backing file holds anything
 * but zeros: where both read zeros (absent, zero clusters, past their ends) nothing can
 * differ, so those ranges are never read. An empty overlay over sparse files costs a few runs.
 */
async function differingCandidates(extents: Array<{ kind: string; guestOffset: number; length: number }>, oldBacking: BlockDevice | null, newBacking: BlockDevice | null): Promise<Range[]> {
  const out: Range[] = [];
  for (const e of extents) {
    if (e.kind !== 'unallocated') continue;
    const nonZero = mergeRanges([
      ...await nonZeroRanges(oldBacking, e.guestOffset, e.length),
      ...await nonZeroRanges(newBacking, e.guestOffset, e.length),
    ]);
    out.push(...nonZero);
  }
  return out;
}

interface Range { offset: number; length: number }

async function nonZeroRanges(device: BlockDevice | null, start: number, length: number): Promise<Range[]> {
  const end = Math.min(start + length, device?.size ?? 0);
  const out: Range[] = [];
  if (!device || end <= start) return out;
  for await (const run of chainBlockStatus(device, start, end - start)) {
    if (!run.zero) out.push({ offset: run.start, length: run.length });
  }
  return out;
}

/** Where the zeros `device` reads from `pos` on end (`limit` when they reach its end: past it the overlay reads zeros too). */
async function zerosEnd(device: BlockDevice | null, pos: number, limit: number): Promise<number> {
  if (!device || pos >= device.size) return limit;
  for await (const run of chainBlockStatus(device, pos, Math.min(limit, device.size) - pos)) {
    if (!run.zero) return pos;
    const end = run.start + run.length;
    return end >= device.size ? limit : end;
  }
  return limit;
}

function mergeRanges(ranges: Range[]): Range[] {
  const sorted = ranges.sort((x, y) => x.offset - y.offset);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.offset + last.length) last.length = Math.max(last.length, r.offset + r.length - last.offset);
    else out.push({ ...r });
  }
  return out;
}

/** The overlay shows the old backing here; make it show the same bytes over the new one. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => { resolve = r; });
  return { promise, resolve };
}

/** `turn`: settles once the piece before this one is written (or found equal, or failed). */
async function copyIfDifferent(overlay: BlockDevice, target: BlockDevice | null, range: { offset: number; length: number }, turn: Promise<void> | null): Promise<void> {
  const old = new Uint8Array(range.length);
  await overlay.read(old, range.offset);
  const next = new Uint8Array(range.length);
  const present = target ? Math.max(0, Math.min(range.length, target.size - range.offset)) : 0;
  if (present > 0) await target!.read(next.subarray(0, present), range.offset);
  if (sameBytes(old, next)) return;
  await turn;
  // Zeros are written as data, not as a zero cluster, as qemu-img 7.2's rebase does: the
  // overlay then maps the same clusters as QEMU's would (qemu-iotests 024 compares the maps).
  await overlay.write(old, range.offset);
}
