// Opening the image of a qemu-io session with qemu-io's options: read-only, snapshot (writes
// go to a temporary overlay that is deleted at close), copy-on-read, the cache mode, the aio
// engine, the discard mode, and image names as json:{...}, file:PATH or --image-opts.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { IoError, UnsupportedError, UsageError } from '../base/errors.js';
import type { BlockDevice } from '../engine/device.js';
import type { ImageFormat } from '../format/probe.js';
import { createImage } from '../ops/create.js';
import { ModedDevice, type DeviceModes } from '../ops/device-modes.js';
import { nestedStore } from '../ops/nested.js';
import { openDevice } from '../ops/open.js';
import { parseImageName, parseImageOpts, type ImageSpec } from './image-spec.js';

/** QEMU's cache modes; qemu-io's default is writethrough. */
export type CacheMode = 'writeback' | 'writethrough' | 'none' | 'directsync' | 'unsafe';

export function parseCacheMode(text: string): CacheMode | undefined {
  return (['writeback', 'writethrough', 'none', 'directsync', 'unsafe'] as const).find((m) => m === text)
    ?? (text === 'off' ? 'none' : undefined);
}

export interface IoOpenOptions {
  format?: ImageFormat;
  readOnly: boolean;
  forceShare?: boolean;
  snapshot?: boolean;
  copyOnRead?: boolean;
  cache: CacheMode;
  /** 'threads' (Node's file I/O runs on libuv's thread pool), 'native' or 'io_uring'. */
  aio?: string;
  /** QEMU's discard=ignore|unmap: the same here, since discard never changes what QED or raw images hold. */
  discard?: string;
  /** `open -o` option strings, as --image-opts text. */
  extra: string[];
}

export interface OpenedImage {
  device: BlockDevice;
  close(): Promise<void>;
}

export async function openIoImage(name: string | undefined, options: IoOpenOptions, imageOpts: boolean): Promise<OpenedImage> {
  const spec = imageSpec(name, options, imageOpts);
  if (options.cache === 'none' || options.cache === 'directsync') throw new UnsupportedError(`cache mode '${options.cache}' (O_DIRECT)`);
  if (options.aio !== undefined && options.aio !== 'threads') throw new UnsupportedError(`aio mode '${options.aio}' (only threads)`);
  if (options.discard !== undefined && !['ignore', 'off', 'unmap', 'on'].includes(options.discard)) {
    throw new UsageError(`Invalid discard option: ${options.discard}`);
  }
  const readOnly = options.readOnly || spec.readOnly === true;
  if (options.copyOnRead && readOnly) throw new UsageError("Can't use copy-on-read on read-only device");
  const format = options.format ?? spec.format;
  const forceShare = options.forceShare || spec.forceShare;
  const modes = { writeThrough: options.cache === 'writethrough', dropFlushes: options.cache === 'unsafe', copyOnRead: options.copyOnRead };
  if (spec.container) {
    if (options.snapshot) throw new UnsupportedError('-s with an image inside another image');
    return openNested(spec, format, readOnly, modes);
  }
  if (spec.protocol !== undefined) await checkProtocol(spec.protocol, spec.path, readOnly);
  if (!options.snapshot) {
    const device = await openDevice(spec.path, {
      format, readOnly, forceShare, noBacking: spec.noBacking, lock: spec.lock, characterDevices: spec.protocol === 'host_device' || spec.protocol === 'host_cdrom',
    });
    return { device: new ModedDevice(device, modes), close: () => device.close() };
  }
  return openSnapshot(spec, format, modes);
}

function imageSpec(name: string | undefined, options: IoOpenOptions, imageOpts: boolean): ImageSpec {
  if (imageOpts || options.extra.length > 0) {
    const text = [...options.extra, ...(name === undefined ? [] : [imageOpts ? name : `file.filename=${name.replace(/,/g, ',,')}`])].join(',');
    return parseImageOpts(options.format !== undefined && !/(^|,)driver=/.test(text) ? `driver=${options.format},${text}` : text);
  }
  if (name === undefined) throw new UsageError('no image named');
  return parseImageName(name);
}

/**
 * What QEMU's protocol drivers demand of the path, in the order they find out: a read-write
 * open of a directory fails in open(2); then 'file' wants a regular file and 'host_device'
 * (and 'host_cdrom') a character or block device.
 */
async function checkProtocol(protocol: NonNullable<ImageSpec['protocol']>, path: string, readOnly: boolean): Promise<void> {
  let info;
  try {
    info = await stat(path);
  } catch {
    return; // the open itself reports a missing file
  }
  if (info.isDirectory() && !readOnly) throw new IoError(`could not open '${path}': Is a directory`, { path, errno: 'EISDIR' });
  if (protocol === 'file' && !info.isFile()) throw new UsageError(`'file' driver requires '${path}' to be a regular file`, { path });
  if (protocol !== 'file' && !info.isCharacterDevice() && !info.isBlockDevice()) {
    throw new UsageError(`'${protocol}' driver requires '${path}' to be either a character or block device`, { path });
  }
}

/** An image whose bytes are another image's guest content (`open -o driver=qed,file.driver=qed,...`). */
async function openNested(spec: ImageSpec, format: ImageFormat | undefined, readOnly: boolean, modes: DeviceModes): Promise<OpenedImage> {
  const container = spec.container!;
  const outer = await openDevice(container.path, { format: container.format, readOnly, lock: container.lock });
  try {
    const name = `${container.path} (inner image)`;
    const inner = await openDevice(name, { format, readOnly, store: nestedStore(outer, name), noBacking: spec.noBacking });
    return {
      device: new ModedDevice(inner, modes),
      close: async () => { try { await inner.close(); } finally { await outer.close(); } },
    };
  } catch (err) {
    await outer.close();
    throw err;
  }
}

/**
 * qemu-io -s: the image is opened read-only under a temporary QED overlay that takes every
 * write and is deleted at close, so the image itself never changes.
 */
async function openSnapshot(spec: ImageSpec, format: ImageFormat | undefined, modes: DeviceModes): Promise<OpenedImage> {
  const base = await openDevice(spec.path, { format, readOnly: true, forceShare: true, noBacking: spec.noBacking });
  const baseFormat = base.format;
  const size = base.size;
  await base.close();
  const dir = await mkdtemp(join(tmpdir(), 'qed-snapshot-'));
  try {
    const overlay = join(dir, 'overlay.qed');
    await createImage(overlay, { format: 'qed', size, backingFile: resolve(spec.path), backingFormat: baseFormat });
    const device = await openDevice(overlay, { format: 'qed' });
    return {
      device: new ModedDevice(device, modes),
      close: async () => {
        try { await device.close(); } finally { await rm(dir, { recursive: true, force: true }); }
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
