// Every operation of the `qed` tool as a function: what qemu-img does, from code. Long ones
// take `onProgress(done, total)` (bytes) and an AbortSignal; arguments are checked here so
// that every failure is one of the library's errors.
import { UsageError, throwIfAborted, withPath } from '../base/errors.js';
import type { FileStore } from '../io/block-file.js';
import type { ImageFormat } from '../format/probe.js';
import type { ChainExtent } from '../engine/device.js';
import { amendImage } from '../ops/amend.js';
import { checkExitCode, checkFile, type CheckReport, type RepairMode } from '../ops/check.js';
import { commitImage } from '../ops/commit.js';
import { compareImages, type CompareResult } from '../ops/compare.js';
import { convertImage, type ConvertOptions as ConvertImageOptions } from '../ops/convert.js';
import { imageInfo, type ImageInfo } from '../ops/info.js';
import { measureImage, type MeasureOptions, type Measurement } from '../ops/measure.js';
import { openDevice } from '../ops/open.js';
import { rebaseImage } from '../ops/rebase.js';
import { resizeImage } from '../ops/resize.js';
import { backingPolicyOf } from './images.js';
import type { BackingPolicy } from '../engine/open.js';
import { guarded, optionalBoolean, optionalBytes, optionalCount, optionalFormat, optionalFunction, optionalSignal, optionsObject, requirePath } from './validate.js';

/** Called as a long operation goes: `done` of `total` bytes (of the guest size, or of the walk). */
export type ProgressCallback = (done: number, total: number) => void;

/** What every long operation accepts. */
export interface LongOperationOptions {
  /** Stop between steps with AbortError. What was written so far stays consistent (see each operation). */
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
  store?: FileStore;
  /** Which backing files may be followed. */
  backingPolicy?: BackingPolicy;
}

function control(o: Partial<LongOperationOptions>, what: string): { signal?: AbortSignal; onProgress?: ProgressCallback } {
  return { signal: optionalSignal(o.signal, what), onProgress: optionalFunction<ProgressCallback>(o.onProgress, 'onProgress') };
}


/** Options of convert. */
export interface ConvertOptions extends Omit<ConvertImageOptions, 'noCreate' | 'chunkSize' | 'salvage'> {
  /** The target exists already: write into it instead of creating it (qemu-img -n). */
  existingTarget?: boolean;
}

/**
 * Copy the guest content of `source` into a new (or, with `existingTarget`, existing) image:
 * sparse, several requests in flight. Aborting leaves the target closed and consistent, with
 * part of the content.
 */
export function convert(source: string, target: string, options?: ConvertOptions): Promise<void> {
  return guarded(source, 'source', async () => {
    requirePath(target, 'target');
    const o = optionsObject(options, 'convert');
    await convertImage(source, target, {
      sourceFormat: optionalFormat(o.sourceFormat, 'sourceFormat'),
      targetFormat: optionalFormat(o.targetFormat, 'targetFormat'),
      clusterSize: optionalBytes(o.clusterSize, 'clusterSize'),
      tableSize: optionalBytes(o.tableSize, 'tableSize'),
      backingFile: o.backingFile,
      backingFormat: optionalFormat(o.backingFormat, 'backingFormat'),
      sparseSize: optionalBytes(o.sparseSize, 'sparseSize'),
      noCreate: optionalBoolean(o.existingTarget, 'existingTarget'),
      inFlight: optionalCount(o.inFlight, 'inFlight'),
      forceShare: optionalBoolean(o.forceShare, 'forceShare'),
      store: o.store, backingPolicy: backingPolicyOf(o.backingPolicy),
      ...control(o, 'convert'),
    });
  });
}

/** Options of check. */
export interface CheckOptions extends Omit<LongOperationOptions, 'backingPolicy'> {
  /** Repair: 'leaks' reclaims leaked clusters, 'all' also fixes corruptions. Default 'none'. */
  repair?: RepairMode;
  format?: ImageFormat;
  /** Check while another process writes the image (qemu-img check -U); no repair. */
  forceShare?: boolean;
}

/** A check's counts, with qemu-img check's exit code: 0 clean, 1 check failed, 2 corruptions, 3 leaks only. */
export interface CheckResult extends CheckReport {
  exitCode: 0 | 1 | 2 | 3;
}

/** Check (and optionally repair) a QED image's metadata, as `qemu-img check`. */
export function check(path: string, options?: CheckOptions): Promise<CheckResult> {
  return guarded(path, 'path', async () => {
    const o = optionsObject(options, 'check');
    if (o.repair !== undefined && o.repair !== 'none' && o.repair !== 'leaks' && o.repair !== 'all') {
      throw new UsageError("repair must be 'none', 'leaks' or 'all'");
    }
    const report = await checkFile(path, {
      repair: o.repair, format: optionalFormat(o.format, 'format'), forceShare: optionalBoolean(o.forceShare, 'forceShare'),
      store: o.store, ...control(o, 'check'),
    });
    return { ...report, exitCode: checkExitCode(report) as CheckResult['exitCode'] };
  });
}

/** Options of info. */
export interface InfoOptions {
  format?: ImageFormat;
  /** Describe every image of the backing chain (qemu-img info --backing-chain). */
  backingChain?: boolean;
  forceShare?: boolean;
  store?: FileStore;
  backingPolicy?: BackingPolicy;
}

/** What `qemu-img info --output=json` says, one entry per image (one unless `backingChain`). */
export function info(path: string, options?: InfoOptions): Promise<ImageInfo[]> {
  return guarded(path, 'path', async () => {
    const o = optionsObject(options, 'info');
    return imageInfo(path, {
      format: optionalFormat(o.format, 'format'), backingChain: optionalBoolean(o.backingChain, 'backingChain'),
      forceShare: optionalBoolean(o.forceShare, 'forceShare'), store: o.store, backingPolicy: backingPolicyOf(o.backingPolicy),
    });
  });
}

/** Options of map. */
export interface MapOptions {
  /** Guest offset to start at (default 0). */
  start?: number;
  /** Bytes to map (default: to the end). */
  length?: number;
  format?: ImageFormat;
  forceShare?: boolean;
  store?: FileStore;
  backingPolicy?: BackingPolicy;
  signal?: AbortSignal;
}

/**
 * The runs `qemu-img map` reports, through the whole backing chain, as they are found: the
 * image is opened for the iteration and closed when it ends (also on `break`).
 *
 * @example
 * for await (const run of map('disk.qed')) if (run.data) console.log(run.start, run.length);
 */
export async function* map(path: string, options?: MapOptions): AsyncGenerator<ChainExtent> {
  requirePath(path, 'path');
  const o = optionsObject(options, 'map');
  const signal = optionalSignal(o.signal, 'map');
  const start = optionalBytes(o.start, 'start') ?? 0;
  const device = await openDevice(path, {
    readOnly: true, format: optionalFormat(o.format, 'format'), forceShare: optionalBoolean(o.forceShare, 'forceShare'),
    store: o.store, backingPolicy: backingPolicyOf(o.backingPolicy),
  }).catch((err: unknown) => { throw withPath(err, path); });
  try {
    if (start > device.size) throw new UsageError(`start ${start} is past the end of the image (${device.size})`, { path });
    const length = optionalBytes(o.length, 'length') ?? device.size - start;
    for await (const run of device.blockStatus(start, Math.min(length, device.size - start))) {
      throwIfAborted(signal, 'map', path);
      yield run;
    }
  } finally {
    await device.close();
  }
}

/** Options of compare. */
export interface CompareOptions extends LongOperationOptions {
  formatA?: ImageFormat;
  formatB?: ImageFormat;
  /** Also fail when the sizes differ or block status differs (qemu-img compare -s). */
  strict?: boolean;
  forceShare?: boolean;
}

/** What `qemu-img compare` finds, with its exit code: 0 identical, 1 different. */
export type CompareReport = CompareResult & { identical: boolean; exitCode: 0 | 1 };

/** Compare the guest content of two images (any formats, through their backing chains). */
export function compare(a: string, b: string, options?: CompareOptions): Promise<CompareReport> {
  return guarded(a, 'first image', async () => {
    requirePath(b, 'second image');
    const o = optionsObject(options, 'compare');
    const result = await compareImages(a, b, {
      formatA: optionalFormat(o.formatA, 'formatA'), formatB: optionalFormat(o.formatB, 'formatB'),
      strict: optionalBoolean(o.strict, 'strict'), forceShare: optionalBoolean(o.forceShare, 'forceShare'),
      store: o.store, backingPolicy: backingPolicyOf(o.backingPolicy), ...control(o, 'compare'),
    });
    const identical = result.kind === 'identical';
    return { ...result, identical, exitCode: identical ? 0 : 1 };
  });
}

/** Options of commit. */
export interface CommitOptions extends LongOperationOptions {
  format?: ImageFormat;
  /** Keep the overlay's data instead of emptying it (qemu-img commit -d). */
  keepOverlay?: boolean;
}

/**
 * Write an overlay's data into its backing file (growing it if smaller), then empty the
 * overlay unless `keepOverlay`. Aborting leaves the backing file with part of the data and
 * the overlay with all of it: the guest content is unchanged.
 */
export function commit(path: string, options?: CommitOptions): Promise<void> {
  return guarded(path, 'path', async () => {
    const o = optionsObject(options, 'commit');
    await commitImage(path, {
      format: optionalFormat(o.format, 'format'), keepOverlay: optionalBoolean(o.keepOverlay, 'keepOverlay'),
      store: o.store, backingPolicy: backingPolicyOf(o.backingPolicy), ...control(o, 'commit'),
    });
  });
}

/** Options of rebase. */
export interface RebaseOptions extends LongOperationOptions {
  format?: ImageFormat;
  backingFormat?: ImageFormat;
  /** Only rewrite the header; copy nothing (qemu-img rebase -u). */
  unsafe?: boolean;
}

/**
 * Change an image's backing file to `newBacking` ('' for none), first copying into the image
 * whatever would otherwise read differently. Aborting keeps the old backing file.
 */
export function rebase(path: string, newBacking: string, options?: RebaseOptions): Promise<void> {
  return guarded(path, 'path', async () => {
    if (typeof newBacking !== 'string') throw new UsageError("newBacking must be a string ('' for none)");
    const o = optionsObject(options, 'rebase');
    await rebaseImage(path, newBacking, {
      format: optionalFormat(o.format, 'format'), backingFormat: optionalFormat(o.backingFormat, 'backingFormat'),
      unsafe: optionalBoolean(o.unsafe, 'unsafe'), store: o.store, backingPolicy: backingPolicyOf(o.backingPolicy), ...control(o, 'rebase'),
    });
  });
}

/** Options of resize. */
export interface ResizeOptions {
  format?: ImageFormat;
  /** Allow making a raw image smaller (QED images cannot shrink). */
  shrink?: boolean;
  store?: FileStore;
}

/** Set the guest size to `size` bytes; returns it. */
export function resize(path: string, size: number, options?: ResizeOptions): Promise<number> {
  return guarded(path, 'path', async () => {
    const newSize = optionalBytes(size, 'size');
    if (newSize === undefined) throw new UsageError('size is required');
    const o = optionsObject(options, 'resize');
    return resizeImage(path, newSize, 0, { format: optionalFormat(o.format, 'format'), shrink: optionalBoolean(o.shrink, 'shrink'), store: o.store });
  });
}

export type { MeasureOptions, Measurement };

/** File sizes a conversion needs: `required` now and `fully-allocated` at most (qemu-img measure). */
export async function measure(options: MeasureOptions): Promise<Measurement> {
  const o = optionsObject(options, 'measure');
  if (o.source !== undefined) requirePath(o.source, 'source');
  const job = (): Promise<Measurement> => measureImage({
    size: optionalBytes(o.size, 'size'), source: o.source, sourceFormat: optionalFormat(o.sourceFormat, 'sourceFormat'),
    targetFormat: optionalFormat(o.targetFormat, 'targetFormat'), clusterSize: optionalBytes(o.clusterSize, 'clusterSize'),
    tableSize: optionalBytes(o.tableSize, 'tableSize'), forceShare: optionalBoolean(o.forceShare, 'forceShare'),
    store: o.store, backingPolicy: backingPolicyOf(o.backingPolicy), ...control(o, 'measure'),
  });
  return o.source === undefined ? job() : guarded(o.source, 'source', job);
}

/** Options of amend. */
export interface AmendOptions {
  /** The new backing file name ('' is refused: use rebase with '' to drop it). */
  backingFile?: string;
  backingFormat?: ImageFormat;
  store?: FileStore;
}

/** Change what the header records about the backing file, crash-safely; nothing is copied. */
export function amend(path: string, options: AmendOptions): Promise<void> {
  return guarded(path, 'path', async () => {
    const o = optionsObject(options, 'amend');
    if (o.backingFile !== undefined) requirePath(o.backingFile, 'backingFile');
    await amendImage(path, { backingFile: o.backingFile, backingFormat: optionalFormat(o.backingFormat, 'backingFormat'), store: o.store });
  });
}

export type { CompareResult, ImageInfo, CheckReport, RepairMode };
