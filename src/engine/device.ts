// The device contract every image kind (QED, raw, a backing chain) implements and every
// front end (ops, CLI, the NBD server) consumes: what a device can do (capabilities), what
// a request may ask for (per-request options), and the operations.
import { OutOfRangeError, ReadOnlyError, UsageError, hex } from '../base/errors.js';
import type { ImageFormat } from '../format/probe.js';

/** One run of a single layer's block status; guest offsets. */
export type LayerExtent =
  | { kind: 'data'; guestOffset: number; length: number; hostOffset: number }
  | { kind: 'zero'; guestOffset: number; length: number; hostOffset?: number }
  | { kind: 'unallocated'; guestOffset: number; length: number };

/** One run of what the guest sees through the whole backing chain (qemu-img map's entries). */
export interface ChainExtent {
  start: number;
  length: number;
  /** The layer that answered: 0 is the top image, 1 its backing file, and so on. */
  depth: number;
  /** Some layer allocated it (data or zero cluster); false: no layer has it and it reads zeros. */
  present: boolean;
  /** Reads as zeros (NBD_STATE_ZERO). */
  zero: boolean;
  /** Backed by data in a layer (not NBD_STATE_HOLE). */
  data: boolean;
  /** Where the data lies in the answering layer's file, where it has a place. */
  hostOffset?: number;
  /** The file holding the data (qemu-img map's "File" column). */
  filename?: string;
}

/** What an open device is: what `qemu-img info` says first. */
export interface DeviceDescription {
  path: string;
  format: ImageFormat;
  /** Guest-visible size in bytes. */
  size: number;
  readOnly: boolean;
  /** QED only: bytes per cluster and clusters per table. */
  clusterSize?: number;
  tableSize?: number;
  /** The backing file's name as the header records it (relative names are relative to this image). */
  backingFile: string | null;
  /** The backing file's format, when the header fixes it or it was probed on open. */
  backingFormat: ImageFormat | null;
  /** How deep the backing chain below this image is (0: no backing file). */
  chainDepth: number;
}

/** Options of one write. */
export interface WriteOptions {
  /** Durable when the request resolves (NBD_CMD_FLAG_FUA); emulated with a flush where not native. */
  fua?: boolean;
}

/** Options of one write-zeroes request. */
export interface WriteZeroesOptions extends WriteOptions {
  /** Deallocation is permitted (qemu-io `write -z -u`); it is never required, so it changes nothing here. */
  mayUnmap?: boolean;
  /** The range must end up allocated, not a hole (NBD_CMD_FLAG_NO_HOLE). */
  noHole?: boolean;
  /**
   * Refuse with FastZeroError, before changing anything, unless the whole range can be zeroed
   * without writing zeros over data (NBD_CMD_FLAG_FAST_ZERO).
   */
  fastZero?: boolean;
}

/** Largest request a client should send (NBD_INFO_BLOCK_SIZE maximum; qemu-nbd's is 32 MiB too). */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/** Request sizes a client should use (NBD_INFO_BLOCK_SIZE). */
export interface BlockSizes {
  minimum: number;
  preferred: number;
  maximum: number;
}

/** What a device can do, as an NBD server advertises it. */
export interface DeviceCapabilities {
  readonly writable: boolean;
  /** FUA costs no more than the write (otherwise a whole-device flush follows the write). */
  readonly nativeFua: boolean;
  /** Some zero requests finish without writing zeros, so fastZero can succeed. */
  readonly fastZero: boolean;
  /** Discard changes what is stored (QED and raw: it does not; content stays as it was). */
  readonly trim: boolean;
  /** Several users of this one instance see each other's writes and a flush covers all of them. */
  readonly multiConn: boolean;
  readonly blockSizes: BlockSizes;
}

/**
 * An open image (QED or raw, with its backing chain). Every method may be called by many
 * callers at once; requests that overlap are ordered, the rest run in parallel.
 */
export interface BlockDevice {
  readonly path: string;
  readonly format: ImageFormat;
  readonly readOnly: boolean;
  /** Guest-visible size in bytes. */
  readonly size: number;
  /** The device whose content shows through unallocated ranges, if any. */
  readonly backing: BlockDevice | null;
  readonly capabilities: DeviceCapabilities;

  /** Fill buf with the guest bytes at offset. */
  read(buf: Uint8Array, offset: number): Promise<void>;
  /**
   * Optional fast path of read: when [offset, offset+buf.length) is all data in this layer
   * and the device can say so at once (its tables are cached), start that read and return
   * its promise; otherwise return undefined, having done nothing, and the caller uses read
   * and blockStatus. Lets the NBD server answer a read of plain data as one data chunk
   * without walking the block status first.
   */
  readIfData?(buf: Uint8Array, offset: number): Promise<void> | undefined;
  /** Write buf at offset; durable after the next flush (or at once with `fua`). */
  write(buf: Uint8Array, offset: number, options?: WriteOptions): Promise<void>;
  /** Make [offset, offset+length) read as zeros, cheaply where the format allows (zero clusters). */
  writeZeroes(offset: number, length: number, options?: WriteZeroesOptions): Promise<void>;
  /** Advisory: content after discard is unchanged (QEMU's QED ignores discard too). */
  discard(offset: number, length: number): Promise<void>;
  /** Make every completed write durable. */
  flush(): Promise<void>;
  /** Change the guest size (QED: grow only, within its L1 capacity). */
  resize(newSize: number): Promise<void>;
  /** This layer's own view of [offset, offset+length): data, zero or unallocated runs, split at table boundaries. */
  layerStatus(offset: number, length: number): Promise<LayerExtent[]>;
  /**
   * Optional (a device without it is walked in fixed steps of layerStatus): this layer's
   * runs from `offset` on, as far into [offset, offset+length) as at most `maxRuns` runs
   * reach, at least one run. Runs are merged across table boundaries, so a sparse 64 TiB
   * image answers in one run; the caller continues where the last run ends.
   */
  layerStatusUpTo?(offset: number, length: number, maxRuns: number): Promise<LayerExtent[]>;
  /**
   * What the guest sees through the whole chain, as merged runs with the depth of the layer
   * that answers (qemu-img map). Walked in bounded steps as you iterate: `for await` over a
   * 64 TiB disk holds one step in memory. Defaults: from 0 to the end.
   */
  blockStatus(start?: number, length?: number): AsyncGenerator<ChainExtent>;
  /** Format, size, geometry and backing file of this device. */
  describe(): DeviceDescription;
  /**
   * Refuse new requests (SHUTDOWN), let every admitted one finish, write everything back and
   * release the file. Rejects if anything acknowledged may not be on disk.
   */
  close(): Promise<void>;
  /** `await using disk = await openImage(…)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Shared request validation, so every device refuses the same things the same way. */
export function checkRequest(device: { path: string; size: number; readOnly: boolean }, offset: number, length: number, write: boolean): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new UsageError(`invalid request: offset ${offset}, length ${length}`, { path: device.path });
  }
  if (offset + length > device.size) {
    throw new OutOfRangeError(`request ${hex(offset)}+${hex(length)} is past the end of the image (${hex(device.size)})`, { path: device.path, guestOffset: offset });
  }
  if (write && device.readOnly) {
    throw new ReadOnlyError('image is opened read-only', { path: device.path });
  }
}

/**
 * Wait for every promise, then fail with the first failure. A request must not settle while
 * any of its I/O is still running: a straggler could land after a later write to the same
 * place, or keep filling a buffer the caller got back.
 */
export async function settleAll(work: Array<Promise<unknown> | undefined>): Promise<void> {
  if (work.length === 1) { await work[0]; return; }
  const results = await Promise.allSettled(work);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}
