// Opening the files of a QED image directly (for header changes) and its backing file
// read-write (for commit), outside the engine's read-only chain.
import { UsageError } from '../base/errors.js';
import type { BlockFile, FileStore } from '../io/block-file.js';
import { defaultFileStore } from '../io/default-store.js';
import type { QedHeader } from '../format/header.js';
import { probeFile, readHeader, type HeaderInfo } from '../engine/open.js';

export interface QedFileHandle { file: BlockFile; info: HeaderInfo; header: QedHeader }

/** Run `job` on the QED file at `path` opened read-write, outside any engine. */
export async function withQedFile<T>(path: string, store: FileStore | undefined, job: (h: QedFileHandle) => Promise<T>): Promise<T> {
  const file = await (store ?? defaultFileStore()).open(path, 'read-write');
  try {
    if (await probeFile(file) !== 'qed') throw new UsageError('not a QED image', { path });
    const info = await readHeader(file);
    return await job({ file, info, header: info.header });
  } finally {
    await file.close();
  }
}
