// Opening an image and its backing chain: probing, loop and depth limits, relative backing
// names, and the NEED_CHECK repair hook. Backing files are always opened read-only.
import { ChainError, FormatError, NeedsCheckError, QedError, UsageError, printable } from '../base/errors.js';
import type { BlockFile, FileStore } from '../io/block-file.js';
import { QED_F_BACKING_FILE, QED_F_BACKING_FORMAT_NO_PROBE, QED_F_NEED_CHECK, QED_HEADER_STRUCT_SIZE } from '../format/constants.js';
import { decodeHeader, hasFeature, type QedHeader, validateHeader } from '../format/header.js';
import { type ImageFormat, probeFormat } from '../format/probe.js';
import type { BlockDevice } from './device.js';
import { QedImage } from './qed-image.js';
import { RawImage } from './raw-image.js';
import type { Scheduler } from './scheduler.js';

/** Backing files below an image, at most. QEMU has no limit; a deeper chain is a mistake or an attack. */
export const MAX_CHAIN_DEPTH = 64;

/**
 * Images travel: a backing name of /etc/passwd or ../../secret would serve a host file as
 * guest data. 'none' refuses every backing file; 'under' follows only names that resolve
 * (symlinks included) inside `root` and contain no '..'.
 */
export type BackingPolicy = { follow: 'any' } | { follow: 'none' } | { follow: 'under'; root: string };

/** Runs on a read-write open of an image with NEED_CHECK set; must leave it consistent and flushed. */
export type RepairHook = (file: BlockFile, header: QedHeader) => Promise<void>;

export interface OpenImageOptions {
  store: FileStore;
  readOnly?: boolean;
  /** Skip probing; 'raw' also for files that start with QED magic. */
  format?: ImageFormat;
  cacheBytes?: number;
  idleFlushMs?: number;
  /** Timers and turns for the idle writeback and long walks (tests drive time with their own). */
  scheduler?: Scheduler;
  maxChainDepth?: number;
  /** Without it, a read-write open of an image that needs a check is refused. */
  repair?: RepairHook;
  /**
   * Read-only opens of an image that needs a check: the entries its repair would clear for
   * reasons only a whole-image check sees, so that it reads as it will after the repair.
   */
  planRepair?: (file: BlockFile, header: QedHeader) => Promise<ReadonlySet<number>>;
  /** Open only this layer: unallocated ranges read as zeros (qemu-img's -U style inspection). */
  noBacking?: boolean;
  /** false: take no image locks (QEMU's locking=off). Applies to every layer. */
  lock?: boolean;
  /** Which backing files may be followed (default: any, within the depth and loop limits). */
  backingPolicy?: BackingPolicy;
  /** Read-only opens: let others write meanwhile (qemu-img -U); backing files inherit it, as in QEMU. */
  forceShare?: boolean;
  /** The top image may be a character device (QEMU's host_device driver); see OpenFileOptions. */
  characterDevices?: boolean;
  /** The QedImage class to build layers with (tests substitute deliberately broken ones). */
  imageClass?: typeof QedImage;
}

export interface HeaderInfo {
  header: QedHeader;
  fileSize: number;
  backingName: string | null;
  backingFormat: ImageFormat | null;
}

/** Read and validate the header and backing name of an open QED file. */
export async function readHeader(file: BlockFile): Promise<HeaderInfo> {
  const fileSize = await file.size();
  const fixed = new Uint8Array(QED_HEADER_STRUCT_SIZE);
  const got = await file.read(fixed, 0);
  if (got < QED_HEADER_STRUCT_SIZE) {
    throw new FormatError(`file is too small to be a QED image (${got} bytes)`, { path: file.path, field: 'header' });
  }
  const header = validateHeader(decodeHeader(fixed), fileSize, file.path);
  let backingName: string | null = null;
  let backingFormat: ImageFormat | null = null;
  if (hasFeature(header, QED_F_BACKING_FILE)) {
    const nameBytes = new Uint8Array(header.backingFilenameSize);
    await file.read(nameBytes, header.backingFilenameOffset);
    backingName = new TextDecoder().decode(nameBytes);
    if (backingName.includes('\0')) {
      throw new FormatError('backing file name contains a NUL byte', { path: file.path, field: 'backing_filename' });
    }
    backingFormat = hasFeature(header, QED_F_BACKING_FORMAT_NO_PROBE) ? 'raw' : null;
  }
  return { header, fileSize, backingName, backingFormat };
}

export async function probeFile(file: BlockFile): Promise<ImageFormat> {
  const head = new Uint8Array(4);
  const got = await file.read(head, 0);
  return probeFormat(head.subarray(0, got));
}

export async function openImage(path: string, options: OpenImageOptions): Promise<BlockDevice> {
  if (options.noBacking && !options.readOnly) {
    // A partial write copies the old content around it from the backing file: without it, that content would be lost.
    throw new UsageError('an image opened without its backing file can only be opened read-only', { path });
  }
  return openLayer(path, options, options.format ?? null, options.readOnly ?? false, []);
}

async function openLayer(path: string, options: OpenImageOptions, format: ImageFormat | null, readOnly: boolean, chain: string[]): Promise<BlockDevice> {
  const maxDepth = options.maxChainDepth ?? MAX_CHAIN_DEPTH;
  const identity = await options.store.identity(path);
  if (chain.includes(identity)) {
    throw new ChainError(`backing chain loops: ${[...chain, identity].join(' -> ')}`, { path, field: 'backing-loop' });
  }
  if (chain.length > maxDepth) {
    throw new ChainError(`backing chain is deeper than ${maxDepth} backing files`, { path });
  }
  const file = await options.store.open(path, readOnly ? 'read-only' : 'read-write', {
    lock: options.lock, forceShare: options.forceShare, characterDevices: chain.length === 0 ? options.characterDevices : undefined,
  });
  try {
    const actual = format ?? await probeFile(file);
    if (actual === 'raw') return await RawImage.open(file);
    return await openQedLayer(file, path, options, readOnly, [...chain, identity]);
  } catch (err) {
    await file.close().catch(() => undefined);
    throw err;
  }
}

async function openQedLayer(file: BlockFile, path: string, options: OpenImageOptions, readOnly: boolean, chain: string[]): Promise<QedImage> {
  let info = await readHeader(file);
  if (!readOnly && hasFeature(info.header, QED_F_NEED_CHECK)) {
    if (!options.repair) {
      throw new NeedsCheckError('image needs a consistency check (NEED_CHECK is set); open it read-only or run check -r all', { path });
    }
    await options.repair(file, info.header);
    info = await readHeader(file);
  }
  const clearedByRepair = readOnly && hasFeature(info.header, QED_F_NEED_CHECK) ? await options.planRepair?.(file, info.header) : undefined;
  let backing: BlockDevice | null = null;
  if (info.backingName !== null && !options.noBacking) {
    const backingPath = options.store.resolveBacking(path, info.backingName);
    await enforceBackingPolicy(options, path, info.backingName, backingPath);
    try {
      backing = await openLayer(backingPath, options, info.backingFormat, true, chain);
    } catch (err) {
      if (err instanceof ChainError) throw err;
      const reason = err instanceof Error ? err.message : String(err);
      throw new ChainError(`could not open backing file '${info.backingName}': ${reason}`, { path, cause: err, field: 'backing-open' });
    }
  }
  const ImageClass = options.imageClass ?? QedImage;
  try {
    const image = new ImageClass(file, info.header, info.fileSize, {
      readOnly,
      backing,
      backingName: info.backingName,
      backingFormat: info.backingFormat,
      cacheBytes: options.cacheBytes,
      idleFlushMs: options.idleFlushMs,
      scheduler: options.scheduler,
      clearedByRepair,
    });
    await image.clearAutoclearFeatures();
    return image;
  } catch (err) {
    // The caller closes this layer's file; the backing chain opened above is ours to close.
    await backing?.close().catch(() => undefined);
    throw err;
  }
}

async function enforceBackingPolicy(options: OpenImageOptions, path: string, name: string, resolved: string): Promise<void> {
  const policy = options.backingPolicy ?? { follow: 'any' };
  if (policy.follow === 'any') return;
  const shown = printable(name);
  if (policy.follow === 'none') {
    throw new ChainError(`backing file '${shown}' refused: backing files are not allowed`, { path });
  }
  if (name.split('/').includes('..')) {
    throw new ChainError(`backing file '${shown}' refused: '..' is not allowed under a backing root`, { path });
  }
  const root = await options.store.identity(policy.root);
  const target = await options.store.identity(resolved);
  if (target !== root && !target.startsWith(root.endsWith('/') ? root : `${root}/`)) {
    throw new ChainError(`backing file '${shown}' refused: it is outside the backing root ${printable(policy.root)}`, { path });
  }
}
