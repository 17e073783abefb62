// `commit`: write what an overlay holds (data and zero clusters) into its backing file, then
// empty the overlay unless asked to keep it. The backing file grows if it is smaller.
import { ChainError, UsageError, throwIfAborted } from '../base/errors.js';
import { alignUp } from '../base/math.js';
import type { FileStore } from '../io/block-file.js';
import { defaultFileStore } from '../io/default-store.js';
import type { ImageFormat } from '../format/probe.js';
import type { BlockDevice } from '../engine/device.js';
import { makeEmpty } from '../engine/make-empty.js';
import { CHAIN_STATUS_MAX_RUNS, layerRunsFrom } from '../engine/chain-status.js';
import { QedImage } from '../engine/qed-image.js';
import { withQedFile } from './chain-files.js';
import { openDevice } from './open.js';
import type { BackingPolicy } from '../engine/open.js';
import { runPool } from './pool.js';

export interface CommitOptions {
  format?: ImageFormat;
  keepOverlay?: boolean;
  store?: FileStore;
  onProgress?: (done: number, total: number) => void;
  /** Stops between pieces (AbortError); the backing file then holds part of the overlay's data, the overlay all of it. */
  signal?: AbortSignal;
  /** Which backing files may be followed (default: the process-wide policy, else any). */
  backingPolicy?: BackingPolicy;
}

/** Allocated bytes copied per round at most. */
const WINDOW = 256 * 1024 * 1024;
const PIECE = 1024 * 1024;

export async function commitImage(path: string, options: CommitOptions = {}): Promise<void> {
  const store = options.store ?? defaultFileStore();
  // Only the overlay's own layer: its backing file is opened read-write below, and a second,
  // read-only open of it would refuse that writer (one writer per image, image-lock.ts).
  const overlay = await openDevice(path, { format: options.format, readOnly: true, store, noBacking: true, backingPolicy: options.backingPolicy });
  try {
    if (!(overlay instanceof QedImage)) throw new UsageError('commit needs a QED overlay', { path });
    if (overlay.backingName === null) throw new UsageError('image does not have a backing file', { path });
    const backingName = overlay.backingName;
    const base = await openDevice(store.resolveBacking(path, backingName), { format: overlay.backingFormat ?? undefined, store, backingPolicy: options.backingPolicy }).catch((err: unknown) => {
      const reason = err instanceof Error ? err.message : String(err);
      throw new ChainError(`could not open backing file '${backingName}': ${reason}`, { path, cause: err });
    });
    try {
      if (base.size < overlay.size) await base.resize(base.format === 'qed' ? alignUp(overlay.size, 512) : overlay.size);
      await copyAllocated(overlay, base, options.onProgress, options.signal);
      await base.flush();
    } finally {
      await base.close();
    }
  } finally {
    await overlay.close();
  }
  if (!options.keepOverlay) await withQedFile(path, store, ({ file, header }) => makeEmpty(file, header));
}

/**
 * Copy the top layer's own data and zero runs. Each round holds at most CHAIN_STATUS_MAX_RUNS
 * runs and WINDOW bytes of allocated data, so memory stays bounded while an empty stretch of
 * any length costs one status request.
 */
async function copyAllocated(from: BlockDevice, to: BlockDevice, onProgress?: (done: number, total: number) => void, signal?: AbortSignal): Promise<void> {
  for (let pos = 0; pos < from.size;) {
    const pieces: Array<{ offset: number; length: number; zero: boolean }> = [];
    let allocated = 0;
    for (const e of await layerRunsFrom(from, pos, from.size, CHAIN_STATUS_MAX_RUNS)) {
      const length = e.kind === 'unallocated' ? e.length : Math.min(e.length, WINDOW - allocated);
      if (length === 0) break;
      if (e.kind !== 'unallocated') {
        for (let at = e.guestOffset; at < e.guestOffset + length; at += PIECE) {
          pieces.push({ offset: at, length: Math.min(PIECE, e.guestOffset + length - at), zero: e.kind === 'zero' });
        }
        allocated += length;
      }
      pos = e.guestOffset + length;
    }
    await runPool(pieces.length, 8, async (i) => {
      const p = pieces[i]!;
      throwIfAborted(signal, 'commit', from.path);
      if (p.zero) { await to.writeZeroes(p.offset, p.length); return; }
      const buf = new Uint8Array(p.length);
      await from.read(buf, p.offset);
      await to.write(buf, p.offset);
    });
    onProgress?.(pos, from.size);
  }
}
