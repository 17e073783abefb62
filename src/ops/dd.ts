// qemu-img dd: a new image holding a byte range of another, copied block by block as dd(1)
// copies (bs bytes at a time, starting `skip` blocks in, at most `count` blocks).
import type { FileStore } from '../io/block-file.js';
import type { ImageFormat } from '../format/probe.js';
import { createImage } from './create.js';
import { openDevice } from './open.js';

export interface DdOptions {
  sourceFormat?: ImageFormat;
  targetFormat?: ImageFormat;
  /** Bytes per block (dd's bs); default 512, as qemu-img's. */
  blockSize?: number;
  /** Blocks to copy at most. */
  count?: number;
  /** Blocks of the source to skip first. */
  skip?: number;
  forceShare?: boolean;
  store?: FileStore;
}

export interface DdResult {
  /** The skip lies past the source's end: the target was made empty (dd(1) warns and does the same). */
  skippedPastEnd: boolean;
}

export async function ddImage(source: string, target: string, options: DdOptions = {}): Promise<DdResult> {
  const bs = options.blockSize ?? 512;
  const input = await openDevice(source, { readOnly: true, format: options.sourceFormat, forceShare: options.forceShare, store: options.store });
  try {
    // The end is the source's size, or count blocks if that is less; the target holds what
    // lies between the skip and that end (qemu-img measures the end from 0, not from the skip).
    let end = input.size;
    if (options.count !== undefined && options.count * bs < end) end = options.count * bs;
    const start = (options.skip ?? 0) * bs;
    const skippedPastEnd = start > end;
    await createImage(target, { format: options.targetFormat ?? 'raw', size: skippedPastEnd ? 0 : end - start, store: options.store });
    const output = await openDevice(target, { format: options.targetFormat ?? 'raw', store: options.store });
    try {
      const buf = new Uint8Array(bs);
      // Every block is written, zeros too, as qemu-img dd does: the target is fully allocated.
      for (let at = skippedPastEnd ? end : start; at < end; at += bs) {
        const piece = buf.subarray(0, Math.min(bs, end - at));
        await input.read(piece, at);
        await output.write(piece, at - start);
      }
      await output.flush();
    } finally {
      await output.close();
    }
    return { skippedPastEnd };
  } finally {
    await input.close();
  }
}
