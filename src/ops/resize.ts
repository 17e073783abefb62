// `resize`: grow a QED image within its L1 capacity (header rewrite), or a raw file either way.
import { UnsupportedError, UsageError } from '../base/errors.js';
import type { FileStore } from '../io/block-file.js';
import type { ImageFormat } from '../format/probe.js';
import { openDevice } from './open.js';
import type { BackingPolicy } from '../engine/open.js';

export interface ResizeOptions { format?: ImageFormat; shrink?: boolean; store?: FileStore; backingPolicy?: BackingPolicy }

/** `size` is absolute, or relative when `relative` is +1/-1. Returns the new size. */
export async function resizeImage(path: string, size: number, relative: -1 | 0 | 1, options: ResizeOptions = {}): Promise<number> {
  const device = await openDevice(path, { format: options.format, store: options.store, backingPolicy: options.backingPolicy });
  try {
    const newSize = relative === 0 ? size : device.size + relative * size;
    if (!Number.isSafeInteger(newSize) || newSize < 0) throw new UsageError(`invalid new size ${newSize}`);
    if (newSize < device.size) {
      if (device.format === 'qed') throw new UnsupportedError('shrinking a QED image (data past the new end would reappear on a later grow)', { path });
      if (!options.shrink) throw new UsageError('use the --shrink option to perform a shrink operation', { path });
    }
    await device.resize(newSize);
    await device.flush();
    return newSize;
  } finally {
    await device.close();
  }
}
