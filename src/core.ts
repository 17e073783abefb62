// The portable API of qed-image: everything but local files. Loads no Node module, so it
// runs wherever a BlockFile can be implemented (a browser, a worker, a remote store); pass a
// FileStore in the options. The package's Node entry (index.ts) adds local files.
export * from './base/errors.js';
export type { BlockFile, FileStore, OpenMode, OpenFileOptions } from './io/block-file.js';
export { setDefaultFileStore } from './io/default-store.js';
export { MemoryFile, MemoryStore } from './io/memory-file.js';
export * from './format/constants.js';
export { decodeHeader, encodeHeader, validateHeader, type QedHeader, type RawHeader } from './format/header.js';
export { Geometry } from './format/geometry.js';
export { probeFormat, type ImageFormat } from './format/probe.js';
export {
  MAX_REQUEST_BYTES, type BlockDevice, type BlockSizes, type DeviceCapabilities, type LayerExtent,
  type WriteOptions, type WriteZeroesOptions,
} from './engine/device.js';
export { chainBlockStatus, type ChainExtent } from './engine/chain-status.js';
export { defaultScheduler, type Scheduler } from './engine/scheduler.js';
export { QedImage, DEFAULT_CACHE_BYTES } from './engine/qed-image.js';
export { RawImage } from './engine/raw-image.js';
export { openImage, readHeader, MAX_CHAIN_DEPTH, type OpenImageOptions, type RepairHook } from './engine/open.js';
export { planQedHeader, createQed, type CreateQedOptions } from './engine/create.js';
export { checkImage, type CheckResult, type CheckOptions } from './check/check.js';
export { openDevice, repairOnOpen, type OpenOptions } from './ops/open.js';
export { createImage, type CreateImageOptions } from './ops/create.js';
