// Opening images for the operations and front ends: local files by default, and the
// NEED_CHECK repair wired in, as QEMU runs its check when it opens a dirty image read-write.
import { FormatError } from '../base/errors.js';
import type { BlockFile, FileStore } from '../io/block-file.js';
import { defaultFileStore } from '../io/default-store.js';
import type { QedHeader } from '../format/header.js';
import type { ImageFormat } from '../format/probe.js';
import type { CheckOptions } from '../check/check.js';
import type { BlockDevice } from '../engine/device.js';
import { openImage, type BackingPolicy, type OpenImageOptions } from '../engine/open.js';

export interface OpenOptions {
  readOnly?: boolean;
  format?: ImageFormat;
  store?: FileStore;
  cacheBytes?: number;
  idleFlushMs?: number;
  scheduler?: OpenImageOptions['scheduler'];
  noBacking?: boolean;
  /** false: take no image locks; see OpenImageOptions. */
  lock?: boolean;
  /** Which backing files may be followed; default: the one set with setDefaultBackingPolicy, else any. */
  backingPolicy?: BackingPolicy;
  /** Read-only opens: let others write meanwhile (qemu-img -U). */
  forceShare?: boolean;
  /** The image may be a character device (QEMU's host_device driver). */
  characterDevices?: boolean;
  imageClass?: OpenImageOptions['imageClass'];
  /** Stops the repair a dirty image's read-write open runs (it stays dirty and is repaired next time). */
  signal?: AbortSignal;
  /** Progress of that repair, when one runs. */
  onRepairProgress?: (done: number, total: number) => void;
}

let defaultBackingPolicy: BackingPolicy = { follow: 'any' };

/** The backing-file policy of every open that names none (the CLI's --backing-root / --no-backing-files). */
export function setDefaultBackingPolicy(policy: BackingPolicy): void {
  defaultBackingPolicy = policy;
}

export function currentBackingPolicy(): BackingPolicy {
  return defaultBackingPolicy;
}

export async function openDevice(path: string, options: OpenOptions = {}): Promise<BlockDevice> {
  return openImage(path, {
    ...options, store: options.store ?? defaultFileStore(),
    repair: (file, header) => repairOnOpen(file, header, { signal: options.signal, onProgress: options.onRepairProgress }),
    planRepair: planRepairOnOpen,
    backingPolicy: options.backingPolicy ?? defaultBackingPolicy,
  });
}

/**
 * Private copies the repair on open may make for clusters referenced more than once. QEMU's
 * repair copies nothing (it reports the corruption and leaves it); a copy per reference
 * would let one hostile L2 table whose entries all name one cluster make an open write
 * thousands of clusters (issue 15). So a few references get their copy, so that guest data a
 * buggy writer shared stays readable, and any beyond these are cleared (they read as the
 * backing file or zeros); `qed check -r all` copies them all.
 */
export const OPEN_REPAIR_MAX_COPIES = 16;

/**
 * The check-and-repair a read-write open of a dirty image runs (as QEMU's qed_open runs
 * qed_check): it fixes corruptions and cuts leaked clusters off the end of the file, and
 * leaves leaks inside the file to `qed check -r leaks|all`, since reclaiming those moves
 * clusters and needs room for the copies. So it needs no new space (a full disk still
 * opens): the bounded copies above are given up for cleared references on ENOSPC. Refuses
 * if corruption remains.
 */
export async function repairOnOpen(file: BlockFile, header: QedHeader, progress: Pick<CheckOptions, 'signal' | 'onProgress'> = {}): Promise<void> {
  // Imported here: only a dirty image opened read-write needs the checker, and every start-up pays for its modules.
  const { checkImage } = await import('../check/check.js');
  const result = await checkImage(file, header, {
    fix: 'all', leakRepair: 'trailing', maxCopies: OPEN_REPAIR_MAX_COPIES, clearWhenNoSpace: true, ...progress,
  });
  if (result.corruptions > 0 || result.checkErrors > 0) {
    throw new FormatError(`image needs repair that could not be completed (${result.corruptions} corruptions remain: ${result.problems[0] ?? 'unknown'})`, { path: file.path });
  }
}

/** Entries a read-only open of a dirty image may mark as cleared at most: a bound on its memory. */
export const MAX_PLANNED_CLEARS = 65536;

/**
 * What repairOnOpen would clear that the engine cannot tell by itself (tables overlapping
 * clusters in use, references over the copy limit), found by a dry run of that repair: a
 * dirty image opened read-only then reads as it will once repaired (issue 15).
 */
export async function planRepairOnOpen(file: BlockFile, header: QedHeader): Promise<ReadonlySet<number>> {
  const { checkImage } = await import('../check/check.js');
  const plan = await checkImage(file, header, { dryRun: true, maxCopies: OPEN_REPAIR_MAX_COPIES });
  const cleared = plan.clearedEntries ?? [];
  if (cleared.length > MAX_PLANNED_CLEARS) {
    throw new FormatError(`image needs repair (NEED_CHECK is set) and has ${cleared.length} entries the repair would clear: open it read-write or run check -r all before reading it`, { path: file.path });
  }
  return new Set(cleared);
}
