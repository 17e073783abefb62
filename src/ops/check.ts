// `check`: run the checker on an image file the way qemu-img check does: open the file
// itself (no automatic repair), optionally repair, then check again and report the second
// result with the counts of what was fixed.
import { UnsupportedError } from '../base/errors.js';

/** The image's format has no check at all (qemu-img: exit 63), unlike an image we cannot open (exit 1). */
export class FormatHasNoCheck extends UnsupportedError {}
import type { FileStore } from '../io/block-file.js';
import { defaultFileStore } from '../io/default-store.js';
import type { ImageFormat } from '../format/probe.js';
import { checkImage, type CheckResult } from '../check/check.js';
import { probeFile, readHeader } from '../engine/open.js';

/** What check repairs: nothing, leaked clusters, or leaks and corruptions. */
export type RepairMode = 'none' | 'leaks' | 'all';

/** What a check found, with the counts qemu-img check prints. */
export interface CheckReport extends CheckResult {
  filename: string;
  format: ImageFormat;
  /** True when a repair changed something and the result is from the re-check. */
  repaired: boolean;
}

export interface CheckFileOptions {
  format?: ImageFormat;
  repair?: RepairMode;
  store?: FileStore;
  /** Check without repair, letting others write meanwhile (qemu-img check -U). */
  forceShare?: boolean;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export async function checkFile(path: string, options: CheckFileOptions = {}): Promise<CheckReport> {
  const store = options.store ?? defaultFileStore();
  const repair = options.repair ?? 'none';
  const file = await store.open(path, repair === 'none' ? 'read-only' : 'read-write', { forceShare: options.forceShare });
  try {
    const format = options.format ?? await probeFile(file);
    if (format !== 'qed') throw new FormatHasNoCheck('checks of raw images (the format has no metadata to check)', { path });
    const { header } = await readHeader(file);
    const first = await checkImage(file, header, { fix: repair, signal: options.signal, onProgress: options.onProgress });
    if (first.corruptionsFixed + first.leaksFixed === 0) return { ...first, filename: path, format, repaired: false };
    const again = await checkImage(file, (await readHeader(file)).header, { fix: 'none', signal: options.signal });
    return { ...again, corruptionsFixed: first.corruptionsFixed, leaksFixed: first.leaksFixed, problems: first.problems, filename: path, format, repaired: true };
  } finally {
    await file.close();
  }
}

/** qemu-img check's exit code: 1 check errors, 2 corruptions, 3 leaks only, 0 clean. */
export function checkExitCode(report: CheckResult): number {
  if (report.checkErrors > 0) return 1;
  if (report.corruptions > 0) return 2;
  if (report.leaks > 0) return 3;
  return 0;
}
