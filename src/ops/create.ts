// Creating QED and raw images, with qemu-img create's rules: the size may come from the
// backing file; the backing file must open unless `unsafe` (qemu-img -u). Everything is
// validated before the target file is touched.
import { UnsupportedError, UsageError, withPath } from '../base/errors.js';
import type { FileStore } from '../io/block-file.js';
import { defaultFileStore } from '../io/default-store.js';
import type { ImageFormat } from '../format/probe.js';
import { SECTOR_SIZE } from '../format/constants.js';
import { planQedHeader, writeNewQed } from '../engine/create.js';
import { openImage, type BackingPolicy } from '../engine/open.js';
import { currentBackingPolicy } from './open.js';

/** Options of createImage. */
export interface CreateImageOptions {
  /** 'qed' (default) or 'raw'. */
  format?: ImageFormat;
  /** Guest size in bytes; with a backing file it defaults to the backing file's size. QED rounds it up to 512. */
  size?: number;
  /** The backing file's name, recorded as given (relative names are relative to the new image). */
  backingFile?: string;
  backingFormat?: ImageFormat;
  /** QED cluster size in bytes (a power of two, 4 KiB to 64 MiB; default 64 KiB). */
  clusterSize?: number;
  /** QED clusters per table (1 to 16; default 4). */
  tableSize?: number;
  /** Do not open the backing file (qemu-img create -u): the size must then be given. */
  unsafe?: boolean;
  /** Refuse (IoError, errno EEXIST) if the file exists; otherwise an existing file is replaced, as qemu-img does. */
  exclusive?: boolean;
  /** Which backing files may be followed (default: the process-wide policy, else any). */
  backingPolicy?: BackingPolicy;
  store?: FileStore;
}

/** The image createImage made. */
export interface CreatedImage {
  path: string;
  format: ImageFormat;
  /** Guest size in bytes (QED sizes are whole sectors). */
  size: number;
  /** The backing file's format as recorded, if any. */
  backingFormat?: ImageFormat;
}

export async function createImage(path: string, options: CreateImageOptions): Promise<CreatedImage> {
  try {
    return await createImageAt(path, options);
  } catch (err) {
    throw withPath(err, path);
  }
}

async function createImageAt(path: string, options: CreateImageOptions): Promise<CreatedImage> {
  const store = options.store ?? defaultFileStore();
  const format = options.format ?? 'qed';
  let size = options.size;
  let backingFormat = options.backingFormat;
  const backingFile = options.backingFile === '' ? undefined : options.backingFile;

  if (format === 'raw') {
    if (backingFile !== undefined) throw new UnsupportedError('a backing file for a raw image', { path });
    if (size === undefined) throw new UsageError('an image size is required', { path });
    if (options.clusterSize !== undefined || options.tableSize !== undefined) {
      throw new UsageError('cluster_size and table_size apply to qed images only', { path });
    }
    if (!Number.isSafeInteger(size) || size < 0) throw new UsageError(`invalid image size ${size}`, { path });
    const file = await store.create(path, { exclusive: options.exclusive });
    try { await file.truncate(size); await file.flush(); } finally { await file.close(); }
    return { path, format, size };
  }

  if (backingFile !== undefined && !options.unsafe) {
    const backingPath = store.resolveBacking(path, backingFile);
    const backing = await openImage(backingPath, { store, readOnly: true, format: backingFormat, backingPolicy: options.backingPolicy ?? currentBackingPolicy() });
    try {
      size ??= backing.size;
      backingFormat ??= backing.format;
    } finally {
      await backing.close();
    }
  }
  if (size === undefined) throw new UsageError('an image size is required (or a backing file to take it from)', { path });
  // qemu-img rounds a QED image's size up to whole sectors, whether given or taken from the backing file.
  if (size % SECTOR_SIZE !== 0) size += SECTOR_SIZE - (size % SECTOR_SIZE);
  const plan = planQedHeader({ size, clusterSize: options.clusterSize, tableSize: options.tableSize, backingFile, backingFormat });
  const file = await store.create(path, { exclusive: options.exclusive });
  try { await writeNewQed(file, plan); } finally { await file.close(); }
  return { path, format, size, backingFormat };
}
