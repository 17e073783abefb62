// Creating a QED image laid out as QEMU lays it out: header in cluster 0 with the backing
// name right after the 64-byte fields, the L1 table in the next table_size clusters, nothing
// else. Validation is separate so that a refused create touches no file.
import { UsageError } from '../base/errors.js';
import { isPowerOfTwo } from '../base/math.js';
import type { BlockFile } from '../io/block-file.js';
import {
  QED_DEFAULT_CLUSTER_SIZE, QED_DEFAULT_TABLE_SIZE, QED_F_BACKING_FILE, QED_F_BACKING_FORMAT_NO_PROBE,
  QED_HEADER_STRUCT_SIZE, QED_MAX_BACKING_NAME, QED_MAX_CLUSTER_SIZE, QED_MAX_TABLE_SIZE, QED_MIN_CLUSTER_SIZE,
  QED_MIN_TABLE_SIZE, SECTOR_SIZE,
} from '../format/constants.js';
import { Geometry } from '../format/geometry.js';
import { encodeHeader, type QedHeader } from '../format/header.js';
import type { ImageFormat } from '../format/probe.js';

export interface CreateQedOptions {
  size: number;
  clusterSize?: number;
  tableSize?: number;
  /** Stored verbatim, as QEMU stores it: relative names resolve against the image's directory. */
  backingFile?: string;
  backingFormat?: ImageFormat;
}

/** Check create options and return the header to write; throws UsageError naming the option. */
export function planQedHeader(options: CreateQedOptions): { header: QedHeader; backingName: Uint8Array | null } {
  const clusterSize = options.clusterSize ?? QED_DEFAULT_CLUSTER_SIZE;
  const tableSize = options.tableSize ?? QED_DEFAULT_TABLE_SIZE;
  if (!isPowerOfTwo(clusterSize) || clusterSize < QED_MIN_CLUSTER_SIZE || clusterSize > QED_MAX_CLUSTER_SIZE) {
    throw new UsageError(`cluster_size ${clusterSize} is invalid: it must be a power of two from 4 KiB to 64 MiB`, { field: 'cluster_size' });
  }
  if (!isPowerOfTwo(tableSize) || tableSize < QED_MIN_TABLE_SIZE || tableSize > QED_MAX_TABLE_SIZE) {
    throw new UsageError(`table_size ${tableSize} is invalid: it must be a power of two from 1 to 16`, { field: 'table_size' });
  }
  const size = options.size;
  if (!Number.isSafeInteger(size) || size < 0 || size % SECTOR_SIZE !== 0) {
    throw new UsageError(`image size ${size} is invalid: it must be a multiple of ${SECTOR_SIZE} bytes`, { field: 'size' });
  }
  const geometry = new Geometry(clusterSize, tableSize, 1);
  if (size > geometry.capacity) {
    throw new UsageError(`image size ${size} is too large for cluster_size ${clusterSize} and table_size ${tableSize} (at most ${geometry.capacity})`, { field: 'size' });
  }
  let features = 0n;
  let backingName: Uint8Array | null = null;
  if (options.backingFile !== undefined && options.backingFile !== '') {
    backingName = new TextEncoder().encode(options.backingFile);
    const room = Math.min(QED_MAX_BACKING_NAME, clusterSize - QED_HEADER_STRUCT_SIZE);
    if (backingName.length > room) {
      throw new UsageError(`backing file name is ${backingName.length} bytes; at most ${room} fit in the header`, { field: 'backing_file' });
    }
    features |= QED_F_BACKING_FILE;
    if (options.backingFormat === 'raw') features |= QED_F_BACKING_FORMAT_NO_PROBE;
  } else if (options.backingFormat !== undefined) {
    throw new UsageError('a backing format needs a backing file', { field: 'backing_fmt' });
  }
  const header: QedHeader = {
    clusterSize,
    tableSize,
    headerSize: 1,
    features,
    compatFeatures: 0n,
    autoclearFeatures: 0n,
    l1TableOffset: clusterSize,
    imageSize: size,
    backingFilenameOffset: backingName ? QED_HEADER_STRUCT_SIZE : 0,
    backingFilenameSize: backingName ? backingName.length : 0,
  };
  return { header, backingName };
}

/** Write a new, empty image into `file` (which must be empty or truncatable). */
export async function writeNewQed(file: BlockFile, plan: { header: QedHeader; backingName: Uint8Array | null }): Promise<void> {
  const { header, backingName } = plan;
  const headerCluster = new Uint8Array(header.clusterSize);
  headerCluster.set(encodeHeader(header), 0);
  if (backingName) headerCluster.set(backingName, QED_HEADER_STRUCT_SIZE);
  await file.truncate(0);
  await file.write(headerCluster, 0);
  // The L1 table is all zeros: extend the file over it rather than writing them.
  await file.truncate(header.l1TableOffset + header.tableSize * header.clusterSize);
  await file.flush();
}

export async function createQed(file: BlockFile, options: CreateQedOptions): Promise<void> {
  await writeNewQed(file, planQedHeader(options));
}

