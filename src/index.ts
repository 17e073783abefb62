// Public API of qed-image.
export * from './base/errors.js';
export type { BlockFile, FileStore, OpenMode } from './io/block-file.js';
export { NodeFile, NodeFileStore } from './io/node-file.js';
export { MemoryFile, MemoryStore } from './io/memory-file.js';
export * from './format/constants.js';
export { decodeHeader, encodeHeader, validateHeader, type QedHeader, type RawHeader } from './format/header.js';
export { Geometry } from './format/geometry.js';
export { probeFormat, type ImageFormat } from './format/probe.js';
export type { BlockDevice, LayerExtent, WriteZeroesOptions } from './engine/device.js';
export { QedImage, DEFAULT_CACHE_BYTES } from './engine/qed-image.js';
export { RawImage } from './engine/raw-image.js';
export { openImage, readHeader, MAX_CHAIN_DEPTH, type OpenImageOptions, type RepairHook } from './engine/open.js';
export { planQedHeader, createQed, type CreateQedOptions } from './engine/create.js';
export { checkImage, type CheckResult, type CheckOptions } from './check/check.js';
export { openDevice, repairOnOpen, type OpenOptions } from './ops/open.js';
export { createImage, type CreateImageOptions } from './ops/create.js';
