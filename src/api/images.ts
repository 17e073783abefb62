// Creating and opening images: the two calls every user makes first.
import { UsageError } from '../base/errors.js';
import type { FileStore } from '../io/block-file.js';
import type { ImageFormat } from '../format/probe.js';
import type { BlockDevice } from '../engine/device.js';
import type { BackingPolicy } from '../engine/open.js';
import { createImage as createImageOp, type CreateImageOptions, type CreatedImage } from '../ops/create.js';
import { openDevice } from '../ops/open.js';
import { track } from './open-images.js';
import { guarded, optionalBoolean, optionalBytes, optionalFormat, optionalFunction, optionalSignal, optionsObject } from './validate.js';

/**
 * An open image (QED or raw, with its backing chain): read, write, zero, flush, resize, walk
 * its block status, close. Safe to use from many concurrent callers. Close it with
 * `close()` or `await using`.
 */
export type Image = BlockDevice;

/** Options of openImage. */
export interface OpenImageOptions {
  /** Open for reading only; writes fail with ReadOnlyError. Default false. */
  readOnly?: boolean;
  /** Skip probing. 'raw' also for a file that starts with QED's magic. */
  format?: ImageFormat;
  /** Bytes of table cache (QED; default 32 MiB). */
  cacheBytes?: number;
  /** Which backing files may be followed; default: any, within the depth and loop limits. */
  backingPolicy?: BackingPolicy;
  /** false: open only this image; unallocated ranges read as zeros. Read-only opens only. */
  backing?: boolean;
  /** false: take no image locks (QEMU's locking=off). Default true. */
  lock?: boolean;
  /** Read-only opens: let another process write meanwhile (qemu-img -U). */
  forceShare?: boolean;
  /** Where files live; default: local files (Node) or the store set with setDefaultFileStore. */
  store?: FileStore;
  /** Aborts the open, including the repair a dirty image's read-write open runs. */
  signal?: AbortSignal;
  /** Progress of that repair, in guest bytes, when one runs. */
  onRepairProgress?: (done: number, total: number) => void;
}

/**
 * Open an image and its backing chain. A read-write open of an image left dirty by a crash
 * repairs it first, as QEMU does.
 *
 * @example
 * await using disk = await openImage('disk.qed');
 * await disk.write(Buffer.alloc(4096, 1), 0);
 */
export function openImage(path: string, options?: OpenImageOptions): Promise<Image> {
  return guarded(path, 'path', () => openValidated(path, options));
}

async function openValidated(path: string, options: OpenImageOptions | undefined): Promise<Image> {
  const o = optionsObject(options, 'openImage');
  const readOnly = optionalBoolean(o.readOnly, 'readOnly') ?? false;
  const backing = optionalBoolean(o.backing, 'backing') ?? true;
  const signal = optionalSignal(o.signal, 'open');
  const device = await openDevice(path, {
    readOnly,
    format: optionalFormat(o.format, 'format'),
    cacheBytes: optionalBytes(o.cacheBytes, 'cacheBytes'),
    backingPolicy: backingPolicyOf(o.backingPolicy),
    noBacking: !backing,
    lock: optionalBoolean(o.lock, 'lock'),
    forceShare: optionalBoolean(o.forceShare, 'forceShare'),
    store: o.store,
    signal,
    onRepairProgress: optionalFunction(o.onRepairProgress, 'onRepairProgress'),
  });
  return track(device);
}

export function backingPolicyOf(value: unknown): BackingPolicy | undefined {
  if (value === undefined) return undefined;
  const p = value as Partial<{ follow: string; root: unknown }>;
  if (p !== null && typeof p === 'object') {
    if (p.follow === 'any' || p.follow === 'none') return { follow: p.follow };
    if (p.follow === 'under' && typeof p.root === 'string' && p.root !== '') return { follow: 'under', root: p.root };
  }
  throw new UsageError("backingPolicy must be { follow: 'any' }, { follow: 'none' } or { follow: 'under', root: DIR }");
}

export type { CreateImageOptions, CreatedImage };

/**
 * Create an image laid out exactly as `qemu-img create` lays it out.
 *
 * @example
 * await createImage('disk.qed', { size: 10 * 2 ** 30, exclusive: true });
 */
export function createImage(path: string, options?: CreateImageOptions): Promise<CreatedImage> {
  return guarded(path, 'path', () => createValidated(path, options));
}

async function createValidated(path: string, options: CreateImageOptions | undefined): Promise<CreatedImage> {
  const o = optionsObject(options, 'createImage');
  if (o.backingFile !== undefined && typeof o.backingFile !== 'string') throw new UsageError('backingFile must be a string', { path });
  return createImageOp(path, {
    format: optionalFormat(o.format, 'format'),
    size: optionalBytes(o.size, 'size'),
    backingFile: o.backingFile,
    backingFormat: optionalFormat(o.backingFormat, 'backingFormat'),
    clusterSize: optionalBytes(o.clusterSize, 'clusterSize'),
    tableSize: optionalBytes(o.tableSize, 'tableSize'),
    unsafe: optionalBoolean(o.unsafe, 'unsafe'),
    exclusive: optionalBoolean(o.exclusive, 'exclusive'),
    store: o.store,
  });
}
