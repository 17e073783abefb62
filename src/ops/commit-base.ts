// Where in an image's backing chain a named base lies (qemu-img commit -b BASE): a relative
// name is taken relative to the image's directory, as backing names are, and compared by
// file identity, so "./x", "../dir/x" and an absolute path all find the same layer.
import type { FileStore } from '../io/block-file.js';
import { defaultFileStore } from '../io/default-store.js';
import type { ImageFormat } from '../format/probe.js';
import { openDevice } from './open.js';

/** 1 for the image's backing file, 2 for that one's, ...; null when the chain does not hold it. */
export async function backingDepthOf(path: string, baseName: string, options: { format?: ImageFormat; store?: FileStore } = {}): Promise<number | null> {
  const store = options.store ?? defaultFileStore();
  const wanted = await store.identity(store.resolveBacking(path, baseName)).catch(() => null);
  if (wanted === null) return null;
  const top = await openDevice(path, { format: options.format, readOnly: true, forceShare: true, store });
  try {
    let depth = 1;
    for (let layer = top.backing; layer !== null; layer = layer.backing, depth++) {
      if (await store.identity(layer.path).catch(() => null) === wanted) return depth;
    }
    return null;
  } finally {
    await top.close();
  }
}
