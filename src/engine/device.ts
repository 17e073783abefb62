// The device contract every image kind (QED, raw, a backing chain) implements and every
// front end (ops, CLI, the NBD server to come) consumes.
import { RangeError_, ReadOnlyError, UsageError, hex } from '../base/errors.js';
import type { ImageFormat } from '../format/probe.js';

/** One run of a single layer's block status; guest offsets. */
export type LayerExtent =
  | { kind: 'data'; guestOffset: number; length: number; hostOffset: number }
  | { kind: 'zero'; guestOffset: number; length: number; hostOffset?: number }
  | { kind: 'unallocated'; guestOffset: number; length: number };

export interface WriteZeroesOptions {
  /** Allow deallocation (qemu-io `write -z -u`, NBD_CMD_WRITE_ZEROES without NO_HOLE). */
  mayUnmap?: boolean;
}

export interface BlockDevice {
  readonly path: string;
  readonly format: ImageFormat;
  readonly readOnly: boolean;
  /** Guest-visible size in bytes. */
  readonly size: number;
  /** The device whose content shows through unallocated ranges, if any. */
  readonly backing: BlockDevice | null;

  /** Fill buf with the guest bytes at offset. */
  read(buf: Uint8Array, offset: number): Promise<void>;
  write(buf: Uint8Array, offset: number): Promise<void>;
  writeZeroes(offset: number, length: number, options?: WriteZeroesOptions): Promise<void>;
  /** Advisory: content after discard is unchanged (QEMU's QED ignores discard too). */
  discard(offset: number, length: number): Promise<void>;
  /** Make every completed write durable. */
  flush(): Promise<void>;
  resize(newSize: number): Promise<void>;
  /** This layer's own view of [offset, offset+length): data, zero or unallocated runs. */
  blockStatus(offset: number, length: number): Promise<LayerExtent[]>;
  close(): Promise<void>;
}

/** Shared request validation, so every device refuses the same things the same way. */
export function checkRequest(device: { path: string; size: number; readOnly: boolean }, offset: number, length: number, write: boolean): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new UsageError(`invalid request: offset ${offset}, length ${length}`, { path: device.path });
  }
  if (offset + length > device.size) {
    throw new RangeError_(`request ${hex(offset)}+${hex(length)} is past the end of the image (${hex(device.size)})`, { path: device.path, offset });
  }
  if (write && device.readOnly) {
    throw new ReadOnlyError('image is opened read-only', { path: device.path });
  }
}
