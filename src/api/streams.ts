// Node streams over images: a Readable of the guest content (every byte, or sparse chunks
// that name the holes) and a Writable that builds an image from a byte stream. Both keep
// several requests in flight and work with stream.pipeline, zlib, fs and HTTP.
import { Readable, Writable, pipeline } from 'node:stream';
import { UsageError, throwIfAborted } from '../base/errors.js';
import { alignUp } from '../base/math.js';
import type { ImageFormat } from '../format/probe.js';
import type { BlockDevice } from '../engine/device.js';
import { defaultFileStore } from '../io/default-store.js';
import type { FileStore } from '../io/block-file.js';
import { zeroRuns } from '../ops/zero-detect.js';
import { createImage, openImage, type CreateImageOptions, type CreatedImage } from './images.js';
import { optionalBoolean, optionalBytes, optionalCount, optionalFunction, optionalSignal, optionsObject } from './validate.js';

const DEFAULT_CHUNK = 4 * 1024 * 1024;
const DEFAULT_IN_FLIGHT = 4;
/** Zero runs shorter than this are read with their neighbours: one large read beats many small ones. */
const MIN_HOLE = 64 * 1024;

/** One piece of a sparse read stream: `data` is null where the guest reads zeros. */
export interface SparseChunk {
  offset: number;
  length: number;
  data: Buffer | null;
}

/** Options of createReadStream. */
export interface ReadStreamOptions {
  /** First guest byte (default 0). */
  start?: number;
  /** Last guest byte, inclusive, as in fs.createReadStream (default: the last byte of the image). */
  end?: number;
  /**
   * false (default): a byte stream of every guest byte, holes as zeros. true: an object-mode
   * stream of SparseChunk, where holes are `data: null` and are never read or materialised.
   */
  sparse?: boolean;
  /** Bytes per chunk (default 4 MiB). */
  chunkSize?: number;
  /** Reads in flight (default 4). */
  inFlight?: number;
  signal?: AbortSignal;
}

/** A Readable of an image's guest content that knows how many bytes it will produce. */
export type ImageReadStream = Readable & { readonly length: number };

/**
 * Stream an open image's guest content. The image stays open: close it after the stream
 * ends (the stream waits for its reads before it ends or is destroyed).
 *
 * @example
 * await pipeline(createReadStream(disk), createGzip(), fs.createWriteStream('disk.raw.gz'));
 */
export function createReadStream(image: BlockDevice, options?: ReadStreamOptions): ImageReadStream {
  if (image === null || typeof image !== 'object' || typeof (image as Partial<BlockDevice>).blockStatus !== 'function') {
    throw new UsageError('createReadStream needs an image from openImage');
  }
  const o = optionsObject(options, 'createReadStream');
  const start = optionalBytes(o.start, 'start') ?? 0;
  const end = (optionalBytes(o.end, 'end') ?? image.size - 1) + 1;
  if (start > image.size || end > image.size || end < start) {
    throw new UsageError(`range ${start}..${end - 1} is outside the image (${image.size} bytes)`, { path: image.path });
  }
  const sparse = optionalBoolean(o.sparse, 'sparse') ?? false;
  const chunkSize = optionalCount(o.chunkSize, 'chunkSize') ?? DEFAULT_CHUNK;
  const inFlight = optionalCount(o.inFlight, 'inFlight') ?? DEFAULT_IN_FLIGHT;
  const signal = optionalSignal(o.signal, 'read stream');
  const chunks = readChunks(image, start, end, chunkSize, inFlight, signal);
  const source = sparse ? chunks : bytesOf(chunks);
  const stream = Readable.from(source, { objectMode: sparse, highWaterMark: sparse ? inFlight : chunkSize });
  return Object.defineProperty(stream, 'length', { value: end - start, enumerable: true }) as ImageReadStream;
}

/** Ranges to emit: runs that read as zeros (long enough to be worth it) and ranges to read. */
async function* plannedPieces(image: BlockDevice, start: number, end: number, chunkSize: number): AsyncGenerator<{ offset: number; length: number; zero: boolean }> {
  let pendingStart = start;
  let pendingEnd = start;
  const flushPending = function* (): Generator<{ offset: number; length: number; zero: boolean }> {
    for (let at = pendingStart; at < pendingEnd; at += chunkSize) {
      yield { offset: at, length: Math.min(chunkSize, pendingEnd - at), zero: false };
    }
    pendingStart = pendingEnd;
  };
  for await (const run of image.blockStatus(start, end - start)) {
    if (run.zero && run.length >= MIN_HOLE) {
      yield* flushPending();
      for (let at = run.start; at < run.start + run.length; at += chunkSize) {
        yield { offset: at, length: Math.min(chunkSize, run.start + run.length - at), zero: true };
      }
      pendingStart = pendingEnd = run.start + run.length;
      continue;
    }
    pendingEnd = run.start + run.length;
    // Emit whole chunks as soon as they are known; keep the tail to merge with the next run.
    while (pendingEnd - pendingStart >= chunkSize) {
      yield { offset: pendingStart, length: chunkSize, zero: false };
      pendingStart += chunkSize;
    }
  }
  yield* flushPending();
}

/**
 * Chunks in order, with up to `inFlight` reads running ahead. Reads still running when the
 * consumer stops are waited for, so none fills a buffer after the stream is gone.
 */
async function* readChunks(image: BlockDevice, start: number, end: number, chunkSize: number, inFlight: number, signal: AbortSignal | undefined): AsyncGenerator<SparseChunk> {
  const queue: Array<Promise<SparseChunk>> = [];
  try {
    for await (const piece of plannedPieces(image, start, end, chunkSize)) {
      throwIfAborted(signal, 'read stream', image.path);
      if (piece.zero) {
        queue.push(Promise.resolve({ offset: piece.offset, length: piece.length, data: null }));
      } else {
        const data = Buffer.allocUnsafe(piece.length);
        const read = image.read(data, piece.offset).then(() => ({ offset: piece.offset, length: piece.length, data }));
        read.catch(() => undefined); // observed when its turn comes; never an unhandled rejection
        queue.push(read);
      }
      if (queue.length >= inFlight) yield await queue.shift()!;
    }
    while (queue.length > 0) yield await queue.shift()!;
  } finally {
    await Promise.allSettled(queue);
  }
}

async function* bytesOf(chunks: AsyncIterable<SparseChunk>): AsyncGenerator<Buffer> {
  for await (const chunk of chunks) yield chunk.data ?? Buffer.alloc(chunk.length);
}

/** Options of createWriteStream and writeImageFromStream. */
export interface WriteStreamOptions extends Omit<CreateImageOptions, 'size'> {
  /** Guest size. Without it the image grows as the stream goes (slower: each growth waits for the writes in flight). */
  size?: number;
  /** Bytes per write (default 4 MiB). */
  chunkSize?: number;
  /** Writes in flight (default 4): more input waits (backpressure). */
  inFlight?: number;
  /** Zero blocks of this many bytes are not written (default 4096; 0 writes everything). */
  sparseSize?: number;
  /** Called after each write with the bytes received so far. */
  onProgress?: (done: number, total: number | undefined) => void;
  signal?: AbortSignal;
}

/**
 * A Writable that builds a new image from a byte stream: zero blocks skipped, several writes
 * in flight, backpressure. On error or destroy the half-written image is removed (when the
 * store can remove files). `finish` means the image is complete, flushed and closed.
 */
export function createWriteStream(path: string, options?: WriteStreamOptions): ImageWriteStream {
  return new ImageWriter(path, options);
}

/** A Writable that builds an image; `result` is set once it finished. */
export type ImageWriteStream = Writable & { readonly path: string; readonly result: CreatedImage | null };

class ImageWriter extends Writable {
  private image: BlockDevice | null = null;
  private created = false;
  private received = 0;
  private staging: Buffer;
  private filled = 0;
  private readonly writes = new Set<Promise<void>>();
  private writeFailure: unknown = null;
  private readonly chunkSize: number;
  private readonly inFlight: number;
  private readonly sparseSize: number;
  private readonly fixedSize: number | undefined;
  private readonly format: ImageFormat;
  private readonly store: FileStore;
  private readonly onProgress: WriteStreamOptions['onProgress'];
  private readonly createOptions: CreateImageOptions;
  /** Result, once finished. */
  result: CreatedImage | null = null;

  constructor(readonly path: string, options?: WriteStreamOptions) {
    const o = optionsObject(options, 'createWriteStream');
    const signal = optionalSignal(o.signal, 'write stream');
    super({ highWaterMark: DEFAULT_CHUNK, signal });
    if (typeof path !== 'string' || path === '') throw new UsageError('path must be a non-empty string');
    this.chunkSize = optionalCount(o.chunkSize, 'chunkSize') ?? DEFAULT_CHUNK;
    this.inFlight = optionalCount(o.inFlight, 'inFlight') ?? DEFAULT_IN_FLIGHT;
    this.sparseSize = optionalBytes(o.sparseSize, 'sparseSize') ?? 4096;
    if (this.sparseSize % 512 !== 0) throw new UsageError(`sparseSize ${this.sparseSize} is not a multiple of 512`, { path });
    this.fixedSize = optionalBytes(o.size, 'size');
    this.onProgress = optionalFunction(o.onProgress, 'onProgress');
    this.format = o.format ?? 'qed';
    this.store = o.store ?? defaultFileStore();
    const { chunkSize: _c, inFlight: _i, sparseSize: _s, onProgress: _p, signal: _g, ...create } = o;
    // QED sizes are whole sectors (as qemu-img rounds them); the bytes past the stream read as zeros.
    const size = this.fixedSize ?? 0;
    this.createOptions = { ...create, size: this.format === 'qed' ? alignUp(size, 512) : size, store: this.store };
    this.staging = Buffer.allocUnsafe(this.chunkSize);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    createImage(this.path, this.createOptions)
      .then((made) => { this.created = true; this.result = made; return openImage(this.path, { store: this.store, format: this.format }); })
      .then((image) => { this.image = image; callback(); }, (err: Error) => callback(err));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.take(chunk).then(() => callback(), (err: Error) => callback(err));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.finish().then(() => callback(), (err: Error) => callback(err));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.discard(error).then(() => callback(error), (err: Error) => callback(error ?? err));
  }

  private async take(chunk: Buffer): Promise<void> {
    if (!(chunk instanceof Uint8Array)) throw new UsageError('write streams take bytes (Buffer or Uint8Array)', { path: this.path });
    let at = 0;
    // Whole chunks that arrive at a chunk boundary are written from the caller's buffer, which
    // a Writable may hold until its callback: no copy into the staging buffer.
    while (this.filled === 0 && chunk.length - at >= this.chunkSize) {
      await this.dispatchBuffer(chunk.subarray(at, at + this.chunkSize));
      at += this.chunkSize;
    }
    while (at < chunk.length) {
      const n = Math.min(chunk.length - at, this.chunkSize - this.filled);
      this.staging.set(chunk.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === this.chunkSize) await this.dispatch();
    }
  }

  /** Send the staged bytes to the image; waits while `inFlight` writes are running. */
  private async dispatch(): Promise<void> {
    const buf = this.staging.subarray(0, this.filled);
    this.staging = Buffer.allocUnsafe(this.chunkSize);
    this.filled = 0;
    await this.dispatchBuffer(buf);
  }

  private async dispatchBuffer(buf: Uint8Array): Promise<void> {
    if (this.writeFailure !== null) throw this.writeFailure;
    const offset = this.received;
    this.received += buf.length;
    await this.fitSize(this.received);
    const image = this.image!;
    const pieces = this.sparseSize === 0 ? [{ start: 0, length: buf.length, zero: false }] : zeroRuns(buf, this.sparseSize);
    for (const piece of pieces) {
      if (piece.zero) continue;
      const write = image.write(buf.subarray(piece.start, piece.start + piece.length), offset + piece.start)
        .catch((err: unknown) => { this.writeFailure ??= err; })
        .finally(() => { this.writes.delete(write); });
      this.writes.add(write);
    }
    this.onProgress?.(this.received, this.fixedSize);
    while (this.writes.size >= this.inFlight) await Promise.race(this.writes);
    if (this.writeFailure !== null) throw this.writeFailure;
  }

  /** A fixed size refuses a longer stream; otherwise the image grows (after the writes in flight). */
  private async fitSize(end: number): Promise<void> {
    const image = this.image!;
    if (end <= image.size) return;
    if (this.fixedSize !== undefined) {
      throw new UsageError(`the stream is longer than the image size (${this.fixedSize} bytes)`, { path: this.path });
    }
    await Promise.all(this.writes);
    await image.resize(this.format === 'qed' ? alignUp(end, 512) : end);
  }

  private async finish(): Promise<void> {
    if (this.filled > 0) await this.dispatch();
    await Promise.all(this.writes);
    if (this.writeFailure !== null) throw this.writeFailure;
    const image = this.image!;
    await image.flush();
    this.image = null;
    await image.close();
    if (this.result) this.result = { ...this.result, size: image.size };
  }

  /** After a failure: let writes settle, close, and remove what this stream created. */
  private async discard(error: Error | null): Promise<void> {
    await Promise.allSettled([...this.writes]);
    const image = this.image;
    this.image = null;
    if (image) await image.close().catch(() => undefined);
    if (error && this.created && this.store.remove) await this.store.remove(this.path).catch(() => undefined);
  }
}

/**
 * Build a new image from a stream of bytes (a Readable, or any async iterable of bytes). The
 * size comes from `options.size`, else from the source's `length` (as createReadStream's
 * streams carry), else the image grows as the data comes. On failure the image is removed.
 *
 * @example
 * await writeImageFromStream(fs.createReadStream('disk.raw.gz').pipe(createGunzip()), 'disk.qed');
 */
export async function writeImageFromStream(source: Readable | AsyncIterable<Uint8Array>, path: string, options?: WriteStreamOptions): Promise<CreatedImage> {
  if (source === null || typeof source !== 'object' || !(Symbol.asyncIterator in source)) {
    throw new UsageError('writeImageFromStream needs a Readable or an async iterable of bytes', { path });
  }
  const o = optionsObject(options, 'writeImageFromStream');
  const length = (source as { length?: unknown }).length;
  const size = o.size ?? (typeof length === 'number' && Number.isSafeInteger(length) && length >= 0 ? length : undefined);
  const target = createWriteStream(path, { ...o, size });
  const readable = source instanceof Readable ? source : Readable.from(source, { objectMode: false });
  try {
    await new Promise<void>((resolve, reject) => pipeline(readable, target, (err) => (err ? reject(err) : resolve())));
  } catch (err) {
    // pipeline reports the first error at once; the removal of the half-written image ends with 'close'.
    if (!target.closed) await new Promise((resolve) => target.once('close', resolve));
    throw err;
  }
  return target.result!;
}
