// What the write, zero and table modules share of one open QED image. The image class builds
// it once; each module takes only what it names.
import type { BlockFile } from '../io/block-file.js';
import type { Geometry } from '../format/geometry.js';
import type { ClusterAllocator } from './qed-allocator.js';
import type { ClusterLookup } from './qed-lookup.js';
import type { MetadataWriteback } from './qed-writeback.js';
import type { RangeLocks } from './range-locks.js';
import type { Scheduler } from './scheduler.js';
import type { TableCache } from './table-cache.js';

export interface QedContext {
  readonly file: BlockFile;
  readonly geometry: Geometry;
  readonly cache: TableCache;
  readonly lookup: ClusterLookup;
  readonly allocator: ClusterAllocator;
  /** Guest cluster ranges being allocated or turned into zero clusters. */
  readonly allocationLocks: RangeLocks;
  readonly writeback: MetadataWriteback;
  readonly scheduler: Scheduler;
  readonly hasBacking: boolean;
  /** Unallocated content: the backing chain's bytes, zeros past its end or without one. */
  readBacking(slice: Uint8Array, guestOffset: number): Promise<void>;
  /** Throws when the image was poisoned (or closed) while a request waited. */
  checkNotPoisoned(): void;
  /** Something in the tables changed: (re)arm the idle writeback. */
  metadataChanged(): void;
}
