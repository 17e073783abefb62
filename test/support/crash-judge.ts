// Judging one crash state: it must open (repairing if NEED_CHECK is set), pass our checker,
// hold only content a crash may leave, take new writes, and (on a sample) satisfy qemu-img.
import { MemoryStore, type MemoryFile } from '../../src/io/memory-file.js';
import type { BlockDevice } from '../../src/engine/device.js';
import { readHeader } from '../../src/engine/open.js';
import { checkImage } from '../../src/check/check.js';
import { openDevice } from '../../src/ops/open.js';
import { hex } from '../../src/base/errors.js';
import { SECTOR } from './crash-file.js';
import { patternBytes, type Random } from './crash-random.js';
import { ContentModel, sameBytes, verifyContent, type Expectation } from './content-model.js';
import { IMAGE_PATH, NO_IDLE_FLUSH_MS, type Recording } from './crash-workload.js';
import { bytesOf, qemuJudge } from './qemu-judge.js';

export async function judgeState(disk: MemoryFile, rec: Recording, model: ContentModel, exp: Expectation, rng: Random, qemuDir: string | null): Promise<string[]> {
  const problems: string[] = [];
  const beforeRepair = qemuDir ? bytesOf(disk) : null;
  const store = new MemoryStore();
  store.add(IMAGE_PATH, disk);
  for (const [path, file] of rec.backingFiles) store.add(path, file);
  let device: BlockDevice;
  try {
    device = await openDevice(IMAGE_PATH, { store, idleFlushMs: NO_IDLE_FLUSH_MS });
  } catch (err) {
    return [`does not open: ${messageOf(err)}`];
  }
  try {
    problems.push(...await corruptionOf(disk, 'after open'));
    problems.push(...await verifyContent(device, model, exp));
    problems.push(...await writeAgain(device, rng, rec.workload.clusterSize));
    await device.close();
    problems.push(...await corruptionOf(disk, 'after new writes'));
  } catch (err) {
    problems.push(`failed: ${messageOf(err)}`);
    await device.close().catch(() => undefined);
  }
  if (qemuDir && beforeRepair) problems.push(...qemuJudge(qemuDir, beforeRepair, bytesOf(disk)));
  return problems;
}

/** Our checker's verdict on the file as it is now; leaks are allowed. */
export async function corruptionOf(disk: MemoryFile, when: string): Promise<string[]> {
  const view = disk.view(true);
  const { header } = await readHeader(view);
  const result = await checkImage(view, header);
  if (result.corruptions === 0 && result.checkErrors === 0) return [];
  return [`${when}: ${result.corruptions} corruption(s), ${result.checkErrors} check error(s): ${result.problems.slice(0, 3).join('; ')}`];
}

/** The repaired image must take a write crossing a cluster boundary and read it back. */
async function writeAgain(device: BlockDevice, rng: Random, clusterSize: number): Promise<string[]> {
  const length = Math.min(device.size, clusterSize + 2 * SECTOR);
  const offset = rng.int((device.size - length) / SECTOR + 1) * SECTOR;
  const data = patternBytes(length, rng.int(1 << 30));
  await device.write(data, offset);
  await device.flush();
  const back = new Uint8Array(length);
  await device.read(back, offset);
  return sameBytes(back, data) ? [] : [`a write at ${hex(offset)} after repair did not read back`];
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
