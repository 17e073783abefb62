// The QED header: pure decode, encode and validation. No I/O.
import { putU32le, putU64le, u32le, u64le } from '../base/bytes.js';
import { FormatError, UnsupportedError, hex } from '../base/errors.js';
import { isAligned, isPowerOfTwo } from '../base/math.js';
import {
  QED_F_BACKING_FILE, QED_HEADER_STRUCT_SIZE, QED_MAGIC, QED_MAX_BACKING_NAME, QED_MAX_CLUSTER_SIZE,
  QED_MAX_TABLE_SIZE, QED_MIN_CLUSTER_SIZE, QED_MIN_TABLE_SIZE, QED_SUPPORTED_FEATURES, SECTOR_SIZE,
} from './constants.js';
import { Geometry } from './geometry.js';

/** The header exactly as stored; u64 fields stay bigint until validated. */
export interface RawHeader {
  magic: number;
  clusterSize: number;
  tableSize: number;
  headerSize: number;
  features: bigint;
  compatFeatures: bigint;
  autoclearFeatures: bigint;
  l1TableOffset: bigint;
  imageSize: bigint;
  backingFilenameOffset: number;
  backingFilenameSize: number;
}

/** A header that passed validation: offsets are safe numbers. */
export interface QedHeader {
  clusterSize: number;
  tableSize: number;
  headerSize: number;
  features: bigint;
  compatFeatures: bigint;
  autoclearFeatures: bigint;
  l1TableOffset: number;
  imageSize: number;
  backingFilenameOffset: number;
  backingFilenameSize: number;
}

export function decodeHeader(bytes: Uint8Array): RawHeader {
  if (bytes.length < QED_HEADER_STRUCT_SIZE) {
    throw new FormatError(`header is truncated: ${bytes.length} of ${QED_HEADER_STRUCT_SIZE} bytes`, { field: 'header' });
  }
  return {
    magic: u32le(bytes, 0),
    clusterSize: u32le(bytes, 4),
    tableSize: u32le(bytes, 8),
    headerSize: u32le(bytes, 12),
    features: u64le(bytes, 16),
    compatFeatures: u64le(bytes, 24),
    autoclearFeatures: u64le(bytes, 32),
    l1TableOffset: u64le(bytes, 40),
    imageSize: u64le(bytes, 48),
    backingFilenameOffset: u32le(bytes, 56),
    backingFilenameSize: u32le(bytes, 60),
  };
}

export function encodeHeader(header: QedHeader): Uint8Array {
  const bytes = new Uint8Array(QED_HEADER_STRUCT_SIZE);
  putU32le(bytes, 0, QED_MAGIC);
  putU32le(bytes, 4, header.clusterSize);
  putU32le(bytes, 8, header.tableSize);
  putU32le(bytes, 12, header.headerSize);
  putU64le(bytes, 16, header.features);
  putU64le(bytes, 24, header.compatFeatures);
  putU64le(bytes, 32, header.autoclearFeatures);
  putU64le(bytes, 40, BigInt(header.l1TableOffset));
  putU64le(bytes, 48, BigInt(header.imageSize));
  putU32le(bytes, 56, header.backingFilenameOffset);
  putU32le(bytes, 60, header.backingFilenameSize);
  return bytes;
}

/**
 * Check every field against the spec and QEMU's open-time rules, in QEMU's order, and return
 * the header with safe numeric offsets. Each refusal names its field and value.
 */
export function validateHeader(raw: RawHeader, fileSize: number, path?: string): QedHeader {
  const fail = (field: string, message: string): never => { throw new FormatError(message, { path, field }); };

  if (raw.magic !== QED_MAGIC) fail('magic', `bad magic ${hex(raw.magic)} (not a QED image)`);
  const unknown = raw.features & ~QED_SUPPORTED_FEATURES;
  if (unknown !== 0n) {
    throw new UnsupportedError(`QED feature bits ${hex(unknown)}`, { path, field: 'features' });
  }
  if (!isPowerOfTwo(raw.clusterSize) || raw.clusterSize < QED_MIN_CLUSTER_SIZE || raw.clusterSize > QED_MAX_CLUSTER_SIZE) {
    fail('cluster_size', `cluster_size ${raw.clusterSize} is invalid (a power of two from 4 KiB to 64 MiB)`);
  }
  if (!isPowerOfTwo(raw.tableSize) || raw.tableSize < QED_MIN_TABLE_SIZE || raw.tableSize > QED_MAX_TABLE_SIZE) {
    fail('table_size', `table_size ${raw.tableSize} is invalid (a power of two from 1 to 16)`);
  }
  const headerBytes = raw.headerSize * raw.clusterSize;
  if (raw.headerSize < 1 || !Number.isSafeInteger(headerBytes) || headerBytes > fileSize) {
    fail('header_size', `header_size ${raw.headerSize} is invalid: ${raw.headerSize} clusters do not fit in the file (${hex(fileSize)} bytes)`);
  }
  const geometry = new Geometry(raw.clusterSize, raw.tableSize, raw.headerSize);

  if (raw.imageSize % BigInt(SECTOR_SIZE) !== 0n) {
    fail('image_size', `image_size ${raw.imageSize} is not a multiple of ${SECTOR_SIZE}`);
  }
  if (raw.imageSize > BigInt(geometry.capacity)) {
    fail('image_size', `image_size ${raw.imageSize} exceeds the L1 capacity ${geometry.capacity}`);
  }
  if (raw.imageSize > BigInt(Number.MAX_SAFE_INTEGER)) {
    fail('image_size', `image_size ${raw.imageSize} is too large to address`);
  }
  const imageSize = Number(raw.imageSize);

  if (raw.l1TableOffset > BigInt(Number.MAX_SAFE_INTEGER)) {
    fail('l1_table_offset', `l1_table_offset 0x${raw.l1TableOffset.toString(16)} is past the end of the file (${hex(fileSize)})`);
  }
  const l1 = Number(raw.l1TableOffset);
  if (!isAligned(l1, raw.clusterSize)) fail('l1_table_offset', `l1_table_offset ${hex(l1)} is not cluster-aligned`);
  if (l1 < headerBytes) fail('l1_table_offset', `l1_table_offset ${hex(l1)} lies inside the header (${hex(headerBytes)} bytes)`);
  if (l1 + geometry.tableBytes > fileSize) {
    fail('l1_table_offset', `L1 table at ${hex(l1)} (${hex(geometry.tableBytes)} bytes) extends past the end of the file (${hex(fileSize)})`);
  }

  if ((raw.features & QED_F_BACKING_FILE) !== 0n) {
    const start = raw.backingFilenameOffset;
    const size = raw.backingFilenameSize;
    if (size === 0) fail('backing_filename_size', 'backing file flag is set but the backing file name is empty');
    if (size > QED_MAX_BACKING_NAME) fail('backing_filename_size', `backing file name size ${size} exceeds ${QED_MAX_BACKING_NAME}`);
    if (start < QED_HEADER_STRUCT_SIZE || start + size > headerBytes) {
      fail('backing_filename_offset', `backing file name at ${hex(start)} (${size} bytes) lies outside the header clusters (${hex(headerBytes)} bytes)`);
    }
  }

  return {
    clusterSize: raw.clusterSize,
    tableSize: raw.tableSize,
    headerSize: raw.headerSize,
    features: raw.features,
    compatFeatures: raw.compatFeatures,
    autoclearFeatures: raw.autoclearFeatures,
    l1TableOffset: l1,
    imageSize,
    backingFilenameOffset: raw.backingFilenameOffset,
    backingFilenameSize: raw.backingFilenameSize,
  };
}

export function hasFeature(header: { features: bigint }, bit: bigint): boolean {
  return (header.features & bit) !== 0n;
}
