// Crash exploration of whole operations that write more than one file (commit, rebase, amend,
// convert -n): the operation runs once on recording files (CrashFile, one clock shared by all
// files), then the power is cut at every flush boundary of any file, and every crash state of
// every file (every prefix, every single omission, torn writes, all subsets of small epochs, a
// sample of larger ones, crash-states.ts) is materialised together with the other files'
// states at that moment. Each combined state is judged by the scenario: its images open (the
// NEED_CHECK repair runs), check clean, and show the guest the content before or after the
// operation (or a state the operation's design allows, such as each sector of a commit's base
// holding its old value or the overlay's).
import { MemoryFile, MemoryStore } from '../../src/io/memory-file.js';
import type { BlockFile, FileStore } from '../../src/io/block-file.js';
import { checkImage } from '../../src/check/check.js';
import { readHeader } from '../../src/engine/open.js';
import { openDevice } from '../../src/ops/open.js';
import { CrashDisk, CrashFile, EventClock, applyOp, type CrashEpoch, type DiskOp, type FileOp, type LandedOp } from './crash-file.js';
import { crashStates, describeLanded, type CrashStateOptions } from './crash-states.js';
import { Random, randomSettle } from './crash-random.js';

export interface OperationScenario {
  name: string;
  /** Files the operation writes: each is recorded. */
  written: string[];
  /** Builds the files before the operation (seeded). */
  setup(store: MemoryStore, rng: Random): Promise<void>;
  /** The operation, on a store whose written files are recording files. */
  run(store: FileStore): Promise<void>;
  /**
   * Judge one crash state (a store holding every file as the crash left it); `before` and
   * `after` are snapshots of the guest views taken by `views` before and after the operation.
   */
  judge(state: MemoryStore, before: GuestViews, after: GuestViews): Promise<string[]>;
  /** What the judge compares: the guest content of some images, read before and after. */
  views(store: MemoryStore): Promise<GuestViews>;
}

export type GuestViews = Map<string, Uint8Array>;

export interface OperationResult { states: number; violations: string[] }

/** Every byte a guest reads from `path` (with its backing chain), through the engine. */
export async function guestView(store: MemoryStore, path: string): Promise<Uint8Array> {
  const device = await openDevice(path, { store, readOnly: true });
  try {
    const out = new Uint8Array(device.size);
    for (let at = 0; at < out.length; at += 1 << 20) await device.read(out.subarray(at, Math.min(out.length, at + (1 << 20))), at);
    return out;
  } finally {
    await device.close();
  }
}

/** Open read-write (repairing a dirty image), close, then our checker must find no corruption. */
export async function opensClean(store: MemoryStore, path: string): Promise<string[]> {
  try {
    const device = await openDevice(path, { store, noBacking: false, idleFlushMs: 1e9 });
    await device.close();
  } catch (err) {
    return [`${path} does not open read-write: ${err instanceof Error ? err.message : String(err)}`];
  }
  const view = store.files.get(path)!.view(true);
  const result = await checkImage(view, (await readHeader(view)).header);
  return result.corruptions > 0 || result.checkErrors > 0 ? [`${path}: ${result.corruptions} corruptions: ${result.problems.slice(0, 2).join('; ')}`] : [];
}

/** Sectors (512 bytes) of `now` that match neither `old` nor `next`; a length of either may differ (a resize). */
export function sectorsOfNeither(now: Uint8Array, old: Uint8Array, next: Uint8Array): number[] {
  const bad: number[] = [];
  for (let at = 0; at < now.length; at += 512) {
    const piece = now.subarray(at, at + 512);
    const same = (other: Uint8Array) => at + piece.length <= other.length && Buffer.compare(piece, other.subarray(at, at + piece.length)) === 0;
    if (!same(old) && !same(next)) bad.push(at / 512);
  }
  return bad;
}

export function sameContent(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** A view of a recording file that the operation may close as often as it opens it. */
function reopenable(file: CrashFile): BlockFile {
  return {
    path: file.path, readOnly: false,
    read: (b, o) => file.read(b, o), write: (b, o) => file.write(b, o), flush: () => file.flush(),
    size: () => file.size(), truncate: (s) => file.truncate(s), close: () => Promise.resolve(),
  };
}

function recordingStore(base: MemoryStore, files: Map<string, CrashFile>): FileStore {
  return {
    open: (p, mode, options) => {
      const recorded = files.get(p);
      return recorded ? Promise.resolve(reopenable(recorded)) : base.open(p, mode, options);
    },
    create: (p, options) => base.create(p, options),
    resolveBacking: (p, name) => base.resolveBacking(p, name),
    identity: (p) => base.identity(p),
  };
}

/** The epoch of `log` in force just before global tick `end`: what is durable, what may land. */
function epochBefore(log: readonly FileOp[], end: number): CrashEpoch {
  let durableBefore = -Infinity;
  for (const op of log) if (op.kind === 'flush' && op.done < end) durableBefore = Math.max(durableBefore, op.issued);
  const diskOps = log.filter((op): op is DiskOp => op.kind !== 'flush');
  return {
    before: end,
    durable: diskOps.filter((op) => op.done < durableBefore),
    pending: diskOps.filter((op) => !(op.done < durableBefore) && op.issued < end),
  };
}

/** Run `scenario` once with `seed`, then judge every crash state; stops after a few violations. */
export async function exploreOperation(scenario: OperationScenario, seed: number, options: CrashStateOptions = {}): Promise<OperationResult> {
  const rng = new Random(seed);
  const setupStore = new MemoryStore();
  await scenario.setup(setupStore, rng);
  const before = await scenario.views(setupStore);
  const clock = new EventClock();
  const recordings = new Map<string, CrashFile>();
  for (const path of scenario.written) {
    recordings.set(path, new CrashFile(setupStore.files.get(path)!.clone(), clock, randomSettle(new Random(seed ^ 0x5e771e))));
  }
  await scenario.run(recordingStore(setupStore, recordings));

  // The state with every operation landed: the operation's result.
  const finalStore = storeOf(setupStore, recordings, (path, file) => {
    const disk = file.durableBase.clone(path);
    for (const op of file.log) if (op.kind !== 'flush') applyOp(disk, op);
    return disk;
  });
  const after = await scenario.views(finalStore);

  // Every flush completion of any file ends a window in which the durable sets stand still.
  const ends = [...new Set([...recordings.values()].flatMap((f) => f.log.filter((op) => op.kind === 'flush' && op.done !== Infinity).map((op) => op.done)))]
    .sort((a, b) => a - b);
  ends.push(Infinity);
  const disks = new Map([...recordings].map(([path, f]) => [path, new CrashDisk(f.durableBase)]));
  const result: OperationResult = { states: 0, violations: [] };
  const seen = new Set<string>();
  for (const end of ends) {
    const epochs = new Map([...recordings].map(([path, f]) => [path, epochBefore(f.log, end)]));
    const key = [...epochs.values()].map((e) => `${e.durable.length}/${e.pending.map((op) => op.index).join(',')}`).join('|');
    if (seen.has(key)) continue;
    seen.add(key);
    // The file with the most pending operations is crashed every way; the others follow along
    // through their own crash states in turn (all landed and none landed included).
    const paths = [...epochs.keys()].sort((a, b) => epochs.get(b)!.pending.length - epochs.get(a)!.pending.length);
    const choices = new Map(paths.map((p) => [p, [...crashStates(epochs.get(p)!.pending, rng, options)]]));
    const primary = choices.get(paths[0]!)!;
    for (const [i, landed] of primary.entries()) {
      const state = new Map<string, LandedOp[]>([[paths[0]!, landed]]);
      for (const other of paths.slice(1)) {
        const list = choices.get(other)!;
        state.set(other, list[(i * 7) % list.length]!);
      }
      const store = storeOf(setupStore, recordings, (path) => disks.get(path)!.materialise(epochs.get(path)!, state.get(path)!));
      result.states++;
      const problems = await scenario.judge(store, before, after);
      if (problems.length > 0) {
        const where = paths.map((p) => `${p}: ${describeLanded(epochs.get(p)!.pending, state.get(p)!)}`).join(' / ');
        result.violations.push(`${scenario.name} seed ${seed}: ${where}: ${problems.join('; ')}`);
        if (result.violations.length >= 5) return result;
      }
    }
  }
  return result;
}

/** A store holding the unwritten files as they were and each written file as `disk` makes it. */
function storeOf(setup: MemoryStore, recordings: Map<string, CrashFile>, disk: (path: string, file: CrashFile) => MemoryFile): MemoryStore {
  const store = new MemoryStore();
  for (const [path, file] of setup.files) if (!recordings.has(path)) store.add(path, file);
  for (const [path, file] of recordings) store.add(path, disk(path, file));
  return store;
}
