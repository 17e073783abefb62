// Changing the backing file recorded in a QED header (rebase -u, amend), crash-safely: the new
// name is written where the old one is not, flushed, and only then do the header fields
// (all in the first sector, so they change atomically) switch to it. A crash leaves either
// the old name and fields or the new ones, never a mix.
import { UsageError } from '../base/errors.js';
import type { BlockFile } from '../io/block-file.js';
import {
  QED_F_BACKING_FILE, QED_F_BACKING_FORMAT_NO_PROBE, QED_HEADER_STRUCT_SIZE, QED_MAX_BACKING_NAME,
} from '../format/constants.js';
import { encodeHeader, type QedHeader } from '../format/header.js';
import type { ImageFormat } from '../format/probe.js';

export interface BackingChange {
  /** null removes the backing file. */
  backingName: string | null;
  backingFormat?: ImageFormat | null;
}

export async function changeBackingFile(file: BlockFile, header: QedHeader, change: BackingChange): Promise<QedHeader> {
  const next: QedHeader = { ...header };
  next.features &= ~(QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE);
  if (change.backingName === null || change.backingName === '') {
    next.backingFilenameOffset = 0;
    next.backingFilenameSize = 0;
  } else {
    const name = new TextEncoder().encode(change.backingName);
    const headerBytes = header.headerSize * header.clusterSize;
    if (name.length > QED_MAX_BACKING_NAME || QED_HEADER_STRUCT_SIZE + name.length > headerBytes) {
      throw new UsageError(`backing file name is ${name.length} bytes; it does not fit in the header`, { path: file.path });
    }
    const offset = placeName(header, name.length, headerBytes);
    await file.write(name, offset);
    await file.flush();
    next.features |= QED_F_BACKING_FILE;
    if (change.backingFormat === 'raw') next.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    next.backingFilenameOffset = offset;
    next.backingFilenameSize = name.length;
  }
  await file.write(encodeHeader(next), 0);
  await file.flush();
  return next;
}

/** A place for the new name that does not overlap the old one, if the header has room. */
function placeName(header: QedHeader, length: number, headerBytes: number): number {
  const hasOld = (header.features & QED_F_BACKING_FILE) !== 0n && header.backingFilenameSize > 0;
  if (!hasOld) return QED_HEADER_STRUCT_SIZE;
  const oldStart = header.backingFilenameOffset;
  const oldEnd = oldStart + header.backingFilenameSize;
  if (QED_HEADER_STRUCT_SIZE + length <= oldStart) return QED_HEADER_STRUCT_SIZE;
  if (oldEnd + length <= headerBytes && oldEnd >= QED_HEADER_STRUCT_SIZE) return oldEnd;
  return QED_HEADER_STRUCT_SIZE; // no room beside it: overwrite in place (QEMU always does)
}
