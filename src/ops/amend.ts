// `amend`: change the header options QED allows to change: the backing file and its format.
import { UnsupportedError, UsageError } from '../base/errors.js';
import type { FileStore } from '../io/block-file.js';
import type { ImageFormat } from '../format/probe.js';
import { changeBackingFile } from '../engine/header-update.js';
import { withQedFile } from './chain-files.js';

export interface AmendOptions { backingFile?: string; backingFormat?: ImageFormat; other?: string[]; store?: FileStore }

export async function amendImage(path: string, options: AmendOptions): Promise<void> {
  for (const key of options.other ?? []) {
    throw new UnsupportedError(`changing ${key} of an existing QED image`, { path });
  }
  if (options.backingFile === undefined && options.backingFormat === undefined) {
    throw new UsageError('nothing to change: give backing_file and/or backing_fmt', { path });
  }
  await withQedFile(path, options.store, async ({ file, header, info }) => {
    const backingName = options.backingFile ?? info.backingName;
    if (backingName === null && options.backingFormat !== undefined) throw new UsageError('backing_fmt needs a backing file', { path });
    await changeBackingFile(file, header, { backingName, backingFormat: options.backingFormat ?? info.backingFormat });
  });
}
