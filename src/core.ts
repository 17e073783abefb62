// The portable API of qed-image: everything but local files and Node streams. Loads no Node
// module, so it runs wherever a BlockFile can be implemented (a browser, a worker, a remote
// store): pass a `store` in the options, or set one with setDefaultFileStore. The package's
// Node entry (index.ts) adds local files, streams and the NBD server.
export {
  QedError, FormatError, UnsupportedError, IoError, UsageError, OutOfRangeError, ReadOnlyError, ChainError,
  LockedError, NeedsCheckError, ClosedError, ShutdownError, PoisonedError, FastZeroError, AbortError,
  type ErrorCode, type ErrorDetails,
} from './base/errors.js';
export type { BlockFile, FileStore, OpenMode, OpenFileOptions } from './io/block-file.js';
export { setDefaultFileStore } from './io/default-store.js';
export { MemoryStore } from './io/memory-file.js';
export type { ImageFormat } from './format/probe.js';
export {
  MAX_REQUEST_BYTES, type BlockDevice, type BlockSizes, type ChainExtent, type DeviceCapabilities,
  type DeviceDescription, type LayerExtent, type WriteOptions, type WriteZeroesOptions,
} from './engine/device.js';
export type { BackingPolicy } from './engine/open.js';
export type { Scheduler } from './engine/scheduler.js';
export { openImage, createImage, type Image, type OpenImageOptions, type CreateImageOptions, type CreatedImage } from './api/images.js';
export {
  convert, check, info, map, compare, commit, rebase, resize, measure, amend,
  type ProgressCallback, type LongOperationOptions, type ConvertOptions, type CheckOptions, type CheckResult,
  type CheckReport, type RepairMode, type InfoOptions, type ImageInfo, type MapOptions, type CompareOptions,
  type CompareReport, type CompareResult, type CommitOptions, type RebaseOptions, type ResizeOptions,
  type MeasureOptions, type Measurement, type AmendOptions,
} from './api/operations.js';
