// QED on-disk constants, under the names of QEMU's qed.h and docs/interop/qed_spec.txt.
//
// Layout (all integers little-endian):
//   cluster 0 .. header_size-1   header: 64 bytes of fields, then the backing file name
//   l1_table_offset              L1 table: table_size clusters of u64 entries
//   anywhere after the header    L2 tables (table_size clusters each) and data clusters
//
//   entries per table  = table_size * cluster_size / 8
//   bytes per L2 table = entries * cluster_size           (one L1 entry covers this much)
//   capacity           = entries * entries * cluster_size
//   guest offset       = l1 index | l2 index | byte in cluster

export const QED_MAGIC = 0x00444551; // 'Q' 'E' 'D' '\0'
export const QED_HEADER_STRUCT_SIZE = 64;

export const QED_MIN_CLUSTER_SIZE = 4 * 1024;
export const QED_MAX_CLUSTER_SIZE = 64 * 1024 * 1024;
export const QED_DEFAULT_CLUSTER_SIZE = 64 * 1024;
export const QED_MIN_TABLE_SIZE = 1;
export const QED_MAX_TABLE_SIZE = 16;
export const QED_DEFAULT_TABLE_SIZE = 4;

export const QED_F_BACKING_FILE = 0x01n;
export const QED_F_NEED_CHECK = 0x02n;
export const QED_F_BACKING_FORMAT_NO_PROBE = 0x04n;
export const QED_SUPPORTED_FEATURES = QED_F_BACKING_FILE | QED_F_NEED_CHECK | QED_F_BACKING_FORMAT_NO_PROBE;
export const QED_SUPPORTED_COMPAT_FEATURES = 0n;
export const QED_SUPPORTED_AUTOCLEAR_FEATURES = 0n;

/** L2 entry meaning "reads as zeros, hides the backing file" (spec: zero cluster). */
export const QED_ZERO_CLUSTER = 1;
/** L1/L2 entry meaning "nothing here". */
export const QED_UNALLOCATED = 0;

export const SECTOR_SIZE = 512;

/** QEMU reads the backing name into a PATH_MAX buffer; a longer name is refused. */
export const QED_MAX_BACKING_NAME = 4095;
