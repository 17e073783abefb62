// `measure`: how large a new image must be. For QED: header, L1, and for every L2 table and
// data cluster the source needs, its size; fully allocated is every cluster and table.
import { UsageError, throwIfAborted } from '../base/errors.js';
import type { FileStore } from '../io/block-file.js';
import { QED_DEFAULT_CLUSTER_SIZE, QED_DEFAULT_TABLE_SIZE } from '../format/constants.js';
import { Geometry } from '../format/geometry.js';
import type { ImageFormat } from '../format/probe.js';
import { planQedHeader } from '../engine/create.js';
import { DEFAULT_SPARSE_SIZE } from './convert.js';
import { chainBlockStatus } from '../engine/chain-status.js';
import { zeroRuns } from './zero-detect.js';
import { openDevice } from './open.js';
import type { BackingPolicy } from '../engine/open.js';

/** Options of measure: give `size` or `source`. */
export interface MeasureOptions {
  /** Measure a new empty image of this size… */
  size?: number;
  /** …or the conversion of this image. */
  source?: string;
  sourceFormat?: ImageFormat;
  /** Default 'raw', as qemu-img. */
  targetFormat?: ImageFormat;
  /** QED cluster size of the target. */
  clusterSize?: number;
  /** QED clusters per table of the target. */
  tableSize?: number;
  store?: FileStore;
  /** Open the source letting others write it meanwhile (qemu-img -U). */
  forceShare?: boolean;
  signal?: AbortSignal;
  /** Which backing files may be followed (default: the process-wide policy, else any). */
  backingPolicy?: BackingPolicy;
  /** Guest bytes of the source examined so far. */
  onProgress?: (done: number, total: number) => void;
}

/** Bytes a converted image needs (qemu-img measure's keys). */
export interface Measurement {
  /** The file size right after conversion. */
  required: number;
  /** The file size once every cluster is written. */
  'fully-allocated': number;
}

const READ_PIECE = 1024 * 1024;

export async function measureImage(options: MeasureOptions): Promise<Measurement> {
  if ((options.size === undefined) === (options.source === undefined)) throw new UsageError('give either a size or a source image');
  const format = options.targetFormat ?? 'raw';
  const clusterSize = options.clusterSize ?? QED_DEFAULT_CLUSTER_SIZE;
  const tableSize = options.tableSize ?? QED_DEFAULT_TABLE_SIZE;
  let size = options.size ?? 0;
  let dataClusters: Set<number> | null = null;
  if (options.source !== undefined) {
    const source = await openDevice(options.source, { readOnly: true, format: options.sourceFormat, store: options.store, forceShare: options.forceShare, backingPolicy: options.backingPolicy });
    try {
      size = source.size;
      if (format === 'qed') dataClusters = await clustersWithData(source, clusterSize, options);
    } finally {
      await source.close();
    }
  }
  if (format === 'raw') return { required: size, 'fully-allocated': size };
  const paddedSize = size % 512 === 0 ? size : size + 512 - (size % 512);
  planQedHeader({ size: paddedSize, clusterSize, tableSize }); // refuses impossible geometry
  const g = new Geometry(clusterSize, tableSize, 1);
  const base = g.headerBytes + g.tableBytes;
  const allClusters = Math.ceil(paddedSize / clusterSize);
  const allTables = Math.ceil(paddedSize / g.bytesPerL2);
  const full = base + allTables * g.tableBytes + allClusters * clusterSize;
  if (!dataClusters) return { required: base, 'fully-allocated': full };
  const tables = new Set([...dataClusters].map((c) => Math.floor(c / g.entriesPerTable)));
  return { required: base + tables.size * g.tableBytes + dataClusters.size * clusterSize, 'fully-allocated': full };
}

/**
 * Target clusters that `convert` will fill: those holding at least one non-zero block of the
 * default sparse size. Ranges the chain reports as zero are skipped unread, as convert does.
 */
async function clustersWithData(source: Awaited<ReturnType<typeof openDevice>>, clusterSize: number, control: Pick<MeasureOptions, 'signal' | 'onProgress'>): Promise<Set<number>> {
  const clusters = new Set<number>();
  const buf = new Uint8Array(READ_PIECE);
  for await (const e of chainBlockStatus(source, 0, source.size)) {
    control.onProgress?.(e.start, source.size);
    if (e.zero) continue;
    for (let at = e.start; at < e.start + e.length; at += READ_PIECE) {
      throwIfAborted(control.signal, 'measure', source.path);
      const piece = buf.subarray(0, Math.min(READ_PIECE, e.start + e.length - at));
      await source.read(piece, at);
      for (const run of zeroRuns(piece, DEFAULT_SPARSE_SIZE)) {
        if (run.zero) continue;
        const first = Math.floor((at + run.start) / clusterSize);
        const last = Math.floor((at + run.start + run.length - 1) / clusterSize);
        for (let c = first; c <= last; c++) clusters.add(c);
      }
    }
  }
  control.onProgress?.(source.size, source.size);
  return clusters;
}
