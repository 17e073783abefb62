// Emptying a QED overlay after commit (QEMU's make_empty): every cluster becomes
// unallocated again. The L1 table is zeroed and flushed before the file is truncated, so a
// crash in between leaves unreachable tables and data (leaks), never a link to freed space.
import type { BlockFile } from '../io/block-file.js';
import { writeZerosAt } from '../io/zeros.js';
import type { QedHeader } from '../format/header.js';

export async function makeEmpty(file: BlockFile, header: QedHeader): Promise<void> {
  const tableBytes = header.tableSize * header.clusterSize;
  await writeZerosAt(file, header.l1TableOffset, tableBytes);
  await file.flush();
  const end = Math.max(header.l1TableOffset + tableBytes, header.headerSize * header.clusterSize);
  await file.truncate(end);
  await file.flush();
}
