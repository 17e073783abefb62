// Crash-test workloads and their recordings: what a workload is, and one run of it on a
// recording file (with its backing file, if any), kept for the explorer to judge later.
import { MemoryFile, MemoryStore } from '../../src/io/memory-file.js';
import type { QedImage } from '../../src/engine/qed-image.js';
import { openDevice } from '../../src/ops/open.js';
import { createImage } from '../../src/ops/create.js';
import { CrashFile, EventClock } from './crash-file.js';
import { storeWith } from './fault-file.js';
import { Random, patternBytes, randomSettle } from './crash-random.js';
import { GuestLog, GuestRecorder } from './guest-log.js';

/** Long enough that the idle writeback never fires inside a test: workloads call quiesce() themselves. */
export const NO_IDLE_FLUSH_MS = 1e9;

export const IMAGE_PATH = '/crash/disk.qed';

export interface Workload {
  name: string;
  clusterSize: number;
  tableSize: number;
  size: number;
  /** The largest size a resize in the workload reaches (default `size`). */
  maxSize?: number;
  /** A backing file of this format and size; its content is a pattern with some holes. */
  backing?: { format: 'raw' | 'qed'; size: number };
  /** A table cache this small makes the engine write tables back under pressure, mid-request. */
  cacheBytes?: number;
  run(guest: GuestRecorder, rng: Random): Promise<void>;
}

export interface Recording {
  workload: Workload;
  seed: number;
  log: CrashFile['log'];
  guest: GuestLog;
  initialDisk: MemoryFile;
  backingFiles: Map<string, MemoryFile>;
  initialContent: Uint8Array;
}

/** Run `workload` once on a recording file; nothing is judged yet. */
export async function recordWorkload(workload: Workload, seed: number, imageClass?: typeof QedImage): Promise<Recording> {
  const rng = new Random(seed);
  const store = new MemoryStore();
  const initialContent = new Uint8Array(workload.maxSize ?? workload.size);
  const backingFiles = new Map<string, MemoryFile>();
  let backingName: string | undefined;
  if (workload.backing) {
    backingName = `base.${workload.backing.format}`;
    const path = store.resolveBacking(IMAGE_PATH, backingName);
    await buildBacking(store, path, workload, seed, initialContent);
    backingFiles.set(path, store.files.get(path)!);
    // Growing never exposes what a longer backing file holds past the old end: it reads zeros.
    initialContent.fill(0, workload.size);
  }
  await createImage(IMAGE_PATH, {
    store, size: workload.size, clusterSize: workload.clusterSize, tableSize: workload.tableSize,
    backingFile: backingName, backingFormat: workload.backing?.format,
  });
  const initialDisk = store.files.get(IMAGE_PATH)!;
  const clock = new EventClock();
  const file = new CrashFile(initialDisk, clock, randomSettle(new Random(seed ^ 0x5e771e)));
  const device = await openDevice(IMAGE_PATH, {
    store: storeWith(store, IMAGE_PATH, file), idleFlushMs: NO_IDLE_FLUSH_MS, imageClass, cacheBytes: workload.cacheBytes,
  });
  const guest = new GuestRecorder(device, clock);
  await workload.run(guest, rng);
  return { workload, seed, log: file.log, guest: guest.log, initialDisk, backingFiles, initialContent };
}

/** A backing file whose clusters alternate between pattern and holes, so that both show through. */
export async function buildBacking(store: MemoryStore, path: string, workload: Workload, seed: number, content: Uint8Array): Promise<void> {
  const { format, size } = workload.backing!;
  const cs = workload.clusterSize;
  const pattern = patternBytes(size, seed ^ 0xbac1);
  for (let at = 0; at < size; at += cs) {
    if ((at / cs) % 3 !== 2) content.set(pattern.subarray(at, Math.min(size, at + cs)), at);
  }
  if (format === 'raw') {
    store.add(path).writeSync(content.subarray(0, size), 0);
    return;
  }
  await createImage(path, { store, size, clusterSize: cs, tableSize: workload.tableSize });
  const device = await openDevice(path, { store, idleFlushMs: NO_IDLE_FLUSH_MS });
  for (let at = 0; at < size; at += cs) {
    if ((at / cs) % 3 !== 2) await device.write(content.subarray(at, Math.min(size, at + cs)), at);
  }
  await device.close();
}
