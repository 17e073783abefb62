// Opening images for the operations and front ends: local files by default, and the
// NEED_CHECK repair wired in, as QEMU runs its check when it opens a dirty image read-write.
import { FormatError } from '../base/errors.js';
import type { BlockFile, FileStore } from '../io/block-file.js';
import { NodeFileStore } from '../io/node-file.js';
import type { QedHeader } from '../format/header.js';
import type { ImageFormat } from '../format/probe.js';
import { checkImage } from '../check/check.js';
import type { BlockDevice } from '../engine/device.js';
import { openImage, type OpenImageOptions } from '../engine/open.js';

export interface OpenOptions {
  readOnly?: boolean;
  format?: ImageFormat;
  store?: FileStore;
  cacheBytes?: number;
  idleFlushMs?: number;
  noBacking?: boolean;
  /** false: take no image locks; see OpenImageOptions. */
  lock?: boolean;
  /** Read-only opens: let others write meanwhile (qemu-img -U). */
  forceShare?: boolean;
  imageClass?: OpenImageOptions['imageClass'];
}

export async function openDevice(path: string, options: OpenOptions = {}): Promise<BlockDevice> {
  return openImage(path, { ...options, store: options.store ?? new NodeFileStore(), repair: repairOnOpen });
}

/** The check-and-repair a read-write open of a dirty image runs; refuses if corruption remains. */
export async function repairOnOpen(file: BlockFile, header: QedHeader): Promise<void> {
  const result = await checkImage(file, header, { fix: 'all' });
  if (result.corruptions > 0 || result.checkErrors > 0) {
    throw new FormatError(`image needs repair that could not be completed (${result.corruptions} corruptions remain: ${result.problems[0] ?? 'unknown'})`, { path: file.path });
  }
}
