// `info`: what qemu-img info reports, with the same keys in the same order.
import type { FileStore } from '../io/block-file.js';
import { defaultFileStore } from '../io/default-store.js';
import { currentBackingPolicy } from './open.js';
import type { ImageFormat } from '../format/probe.js';
import type { BlockDevice } from '../engine/device.js';
import { openImage, type BackingPolicy } from '../engine/open.js';
import { QedImage } from '../engine/qed-image.js';

/** Keys as qemu-img info --output=json spells them, in its order. */
export interface ImageInfo {
  'backing-filename-format'?: string;
  'virtual-size': number;
  filename: string;
  'cluster-size'?: number;
  format: ImageFormat;
  'actual-size'?: number;
  'full-backing-filename'?: string;
  'backing-filename'?: string;
  'dirty-flag': boolean;
}

export interface InfoOptions {
  format?: ImageFormat;
  backingChain?: boolean;
  store?: FileStore;
  /** Open letting others write meanwhile (qemu-img info -U). */
  forceShare?: boolean;
  /** Which backing files may be followed (default: the process-wide policy, else any). */
  backingPolicy?: BackingPolicy;
  /** qemu-img reports st_blocks * 512; other stores have no such notion. */
  actualSize?: (path: string) => Promise<number | undefined>;
}

export async function imageInfo(path: string, options: InfoOptions = {}): Promise<ImageInfo[]> {
  const store = options.store ?? defaultFileStore();
  const actualSize = options.actualSize ?? (async (p: string) => { try { return await store.allocatedBytes?.(p); } catch { return undefined; } });
  // The chain is opened only when asked for: plain info works with a missing backing file.
  const top = await openImage(path, { store, readOnly: true, format: options.format, noBacking: !options.backingChain, forceShare: options.forceShare, backingPolicy: options.backingPolicy ?? currentBackingPolicy() });
  try {
    const infos: ImageInfo[] = [];
    for (let layer: BlockDevice | null = top; layer; layer = layer.backing) {
      infos.push(await describe(layer, store, actualSize));
    }
    return infos;
  } finally {
    await top.close();
  }
}

async function describe(device: BlockDevice, store: FileStore, actualSize: (path: string) => Promise<number | undefined>): Promise<ImageInfo> {
  const actual = await actualSize(device.path);
  if (!(device instanceof QedImage)) {
    return withActual({ 'virtual-size': device.size, filename: device.path, format: device.format, 'dirty-flag': false }, actual);
  }
  const info: ImageInfo = {} as ImageInfo;
  if (device.backingFormat) info['backing-filename-format'] = device.backingFormat;
  info['virtual-size'] = device.size;
  info.filename = device.path;
  info['cluster-size'] = device.clusterSize;
  info.format = 'qed';
  if (actual !== undefined) info['actual-size'] = actual;
  if (device.backingName !== null) {
    info['full-backing-filename'] = store.resolveBacking(device.path, device.backingName);
    info['backing-filename'] = device.backingName;
  }
  // qemu-img never reports QED's NEED_CHECK as dirty (bdrv_qed_get_info leaves is_dirty
  // unset); the promise is to agree on every key, so neither do we. `qed check` tells.
  info['dirty-flag'] = false;
  return info;
}

function withActual(info: ImageInfo, actual: number | undefined): ImageInfo {
  const { 'dirty-flag': dirty, ...rest } = info;
  return { ...rest, ...(actual === undefined ? {} : { 'actual-size': actual }), 'dirty-flag': dirty };
}
