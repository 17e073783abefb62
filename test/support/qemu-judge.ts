// QEMU as the second judge: `qemu-img check` of a sampled crash state before and after our
// repair, on a scratch copy with the recording's backing files beside it.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MemoryFile } from '../../src/io/memory-file.js';
import { QED_F_NEED_CHECK } from '../../src/format/constants.js';
import type { Recording } from './crash-workload.js';

export interface QemuVerdict { exit: number; corruptions: number; checkErrors: number; leaks: number; output: string }

/** `qemu-img check` (with `-r all` if asked): exit 0 clean, 2 corrupt, 3 leaks only, 1 could not check. */
export function qemuCheck(path: string, repair = false): QemuVerdict {
  const args = ['check', ...(repair ? ['-r', 'all'] : []), '-f', 'qed', '--output=json', path];
  const run = spawnSync('qemu-img', args, { encoding: 'utf8' });
  let json: Record<string, number> = {};
  try { json = JSON.parse(run.stdout) as Record<string, number>; } catch { /* reported through exit and output */ }
  return {
    exit: run.status ?? -1,
    corruptions: json['corruptions'] ?? 0,
    checkErrors: json['check-errors'] ?? (run.status === 1 ? 1 : 0),
    leaks: json['leaks'] ?? 0,
    output: (run.stdout + run.stderr).replace(/\s+/g, ' ').slice(0, 300),
  };
}

/**
 * QEMU trusts an image whose NEED_CHECK is clear, so such a crash state must pass its check
 * as it is; one with NEED_CHECK set must be fully repairable by QEMU's own check. After our
 * repair and new writes, QEMU must find no corruption either.
 */
export function qemuJudge(dir: string, beforeRepair: Uint8Array, afterRepair: Uint8Array): string[] {
  const problems: string[] = [];
  const path = join(dir, 'disk.qed');
  const clean = (v: QemuVerdict) => (v.exit === 0 || v.exit === 3) && v.corruptions === 0 && v.checkErrors === 0;
  writeFileSync(path, beforeRepair);
  const dirty = (new DataView(beforeRepair.buffer, beforeRepair.byteOffset).getBigUint64(16, true) & QED_F_NEED_CHECK) !== 0n;
  const before = qemuCheck(path, dirty);
  if (!clean(before)) problems.push(`qemu-img check${dirty ? ' -r all' : ''} of the crash state (NEED_CHECK ${dirty ? 'set' : 'clear'}): ${before.output}`);
  writeFileSync(path, afterRepair);
  const after = qemuCheck(path);
  if (!clean(after)) problems.push(`qemu-img check after our repair and new writes: ${after.output}`);
  return problems;
}

/** A snapshot of the whole file, as QEMU (or a test) needs it. */
export function bytesOf(file: MemoryFile): Uint8Array {
  const bytes = new Uint8Array(file.sizeSync);
  file.readSync(bytes, 0);
  return bytes;
}

/** QEMU opens the backing file by its name next to the image: put the recording's there. */
export function writeBackingFiles(rec: Recording, dir: string): void {
  for (const [path, file] of rec.backingFiles) writeFileSync(join(dir, path.split('/').pop()!), bytesOf(file));
}
