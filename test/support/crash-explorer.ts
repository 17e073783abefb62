// The crash explorer: runs a workload against the engine on a recording file, then, for each
// flush epoch of what it recorded, builds crash states (every prefix, every single omission,
// torn writes, all subsets of small epochs and a seeded sample of larger ones) and judges each
// one as the reliability promises ask (docs/reliability.md):
//   1. it opens read-write (NEED_CHECK repair runs) and our checker finds no corruption;
//   2. on a sample, `qemu-img check` agrees, before and after our repair;
//   3. every sector acknowledged before the last completed flush reads back, every other
//      sector holds one of the values a crash could leave there, never a third value;
//   4. the repaired image takes new writes and is still consistent after them.
// The guest-level model (what each sector may hold) lives here too, because the fault tests
// and the kill test judge content the same way.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { MemoryFile, MemoryStore } from '../../src/io/memory-file.js';
import type { BlockDevice } from '../../src/engine/device.js';
import { QedImage } from '../../src/engine/qed-image.js';
import { readHeader, type RepairHook } from '../../src/engine/open.js';
import { checkImage } from '../../src/check/check.js';
import { openDevice, repairOnOpen } from '../../src/ops/open.js';
import { createImage } from '../../src/ops/create.js';
import { QED_F_NEED_CHECK } from '../../src/format/constants.js';
import { hex } from '../../src/base/errors.js';
import {
  CrashDisk, CrashFile, EventClock, SECTOR, crashEpochs, sectorsOf, type DiskOp, type LandedOp, type WriteOp,
} from './crash-file.js';
import { storeWith } from './fault-file.js';

/** Long enough that the idle writeback never fires inside a test: workloads call quiesce() themselves. */
export const NO_IDLE_FLUSH_MS = 1e9;

// ---- randomness ------------------------------------------------------------------------

/** mulberry32: small, fast, and the same sequence everywhere for a given seed. */
export class Random {
  private state: number;
  constructor(readonly seed: number) { this.state = (seed >>> 0) || 0x9e3779b9; }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  chance(p: number): boolean { return this.next() < p; }
}

/** Bytes no other pattern (and no zero sector) will match by accident. */
export function patternBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  const words = new Uint32Array(bytes.buffer, 0, length >>> 2);
  let x = (seed ^ 0x2545f491) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
  for (let i = words.length * 4; i < length; i++) bytes[i] = (i * 131 + seed) & 0xff | 1;
  return bytes;
}

/** A delay of a few microtask hops between an operation's issue and its completion. */
export function randomSettle(rng: Random): () => Promise<void> {
  return async () => {
    for (let hops = rng.chance(0.5) ? 0 : 1 + rng.int(4); hops > 0; hops--) await null;
  };
}

// ---- the guest's side: what was asked and what was acknowledged ------------------------

export interface GuestWrite {
  offset: number;
  length: number;
  /** null for a zero write. */
  data: Uint8Array | null;
  issued: number;
  /** Infinity until acknowledged; a rejected request is never acknowledged. */
  acked: number;
}
export interface GuestSync { issued: number; acked: number }
export interface GuestResize { size: number; issued: number; acked: number }

export class GuestLog {
  readonly writes: GuestWrite[] = [];
  /** Flushes and closes: after one is acknowledged, what was acknowledged before it began is durable. */
  readonly syncs: GuestSync[] = [];
  readonly resizes: GuestResize[] = [];
}

/** Calls the device and logs each request's issue and acknowledgement on the shared clock. */
export class GuestRecorder {
  /** Pass the log of an earlier recorder to continue its history on a reopened device. */
  constructor(readonly device: BlockDevice, private readonly clock: EventClock, readonly log = new GuestLog()) {}

  get size(): number { return this.device.size; }

  async write(data: Uint8Array, offset: number): Promise<void> {
    checkSectorAligned(offset, data.length);
    const entry: GuestWrite = { offset, length: data.length, data: data.slice(), issued: this.clock.tick(), acked: Infinity };
    this.log.writes.push(entry);
    await this.device.write(data, offset);
    entry.acked = this.clock.tick();
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    checkSectorAligned(offset, length);
    const entry: GuestWrite = { offset, length, data: null, issued: this.clock.tick(), acked: Infinity };
    this.log.writes.push(entry);
    await this.device.writeZeroes(offset, length);
    entry.acked = this.clock.tick();
  }

  /** The device contract: content after a discard is unchanged, so it is not a write. */
  discard(offset: number, length: number): Promise<void> { return this.device.discard(offset, length); }

  flush(): Promise<void> { return this.sync(() => this.device.flush()); }
  close(): Promise<void> { return this.sync(() => this.device.close()); }

  async resize(size: number): Promise<void> {
    const entry: GuestResize = { size, issued: this.clock.tick(), acked: Infinity };
    this.log.resizes.push(entry);
    await this.device.resize(size);
    entry.acked = this.clock.tick();
  }

  /** Write back and clear NEED_CHECK as the idle timer would. Promises nothing, so not a sync. */
  async quiesce(): Promise<void> {
    if (this.device instanceof QedImage) await this.device.quiesce();
  }

  private async sync(run: () => Promise<void>): Promise<void> {
    const entry: GuestSync = { issued: this.clock.tick(), acked: Infinity };
    this.log.syncs.push(entry);
    await run();
    entry.acked = this.clock.tick();
  }
}

/** The model works per sector; a sub-sector guest write would make "old or new" ambiguous. */
function checkSectorAligned(offset: number, length: number): void {
  if (offset % SECTOR !== 0 || length % SECTOR !== 0) throw new Error(`workload bug: ${offset}+${length} is not sector-aligned`);
}

// ---- what each sector may hold after a crash --------------------------------------------

const ZERO_SECTOR = new Uint8Array(SECTOR);
const READ_GAP_SECTORS = 32;

export interface Expectation {
  /** Device sizes a crash may leave. */
  sizes: number[];
  /** Allowed values of every sector some write touched; other sectors hold `initial`. */
  candidates: Map<number, Uint8Array[]>;
  /** The keys of `candidates`, ascending. */
  constrained: number[];
}

/**
 * The guest-level promise. A crash before tick `before` (with every request acknowledged
 * before it) must leave each sector holding a value some write could have left: the initial
 * content or a write's bytes, minus those a durable write has replaced. A write is durable
 * when it was acknowledged before a sync that was itself acknowledged before the crash began.
 */
export class ContentModel {
  /** Writes touching each sector, in issue order. */
  private readonly bySector = new Map<number, GuestWrite[]>();
  readonly touched: number[];

  /**
   * `fromEmptyLayer`: the initial content is what a layer with nothing allocated shows (its
   * backing file, or zeros). Otherwise (an image written before the log began) nothing can be
   * assumed about unmapped sectors, so all of them are read back.
   */
  constructor(readonly initial: Uint8Array, readonly initialSize: number, readonly log: GuestLog, readonly fromEmptyLayer = true) {
    for (const w of log.writes) {
      for (let s = w.offset / SECTOR; s < (w.offset + w.length) / SECTOR; s++) {
        let list = this.bySector.get(s);
        if (!list) this.bySector.set(s, list = []);
        list.push(w);
      }
    }
    this.touched = [...this.bySector.keys()].sort((a, b) => a - b);
  }

  /**
   * What a crash before tick `before` may leave. `live`: no crash at all (the image is still
   * open, or was closed by a process that kept running), so every acknowledged write counts.
   */
  expectationAt(before: number, live = false): Expectation {
    const lastSync = live ? Infinity : Math.max(-Infinity, ...this.log.syncs.filter((s) => s.acked < before).map((s) => s.issued));
    const durable = (w: GuestWrite): boolean => w.acked < lastSync;
    const candidates = new Map<number, Uint8Array[]>();
    for (const [sector, writes] of this.bySector) {
      const issued = writes.filter((w) => w.issued < before);
      // A write is replaced once a durable write to the sector was issued after it was acknowledged.
      const replacedBelow = Math.max(-Infinity, ...issued.filter(durable).map((w) => w.issued));
      const values: Uint8Array[] = [];
      if (replacedBelow === -Infinity) values.push(this.initialSector(sector));
      for (const w of issued) if (!(w.acked < replacedBelow)) values.push(sectorOf(w, sector));
      candidates.set(sector, values);
    }
    const grown = this.log.resizes.filter((r) => r.issued < before);
    const least = Math.max(this.initialSize, ...grown.filter((r) => r.acked < before).map((r) => r.size));
    const sizes = [this.initialSize, ...grown.map((r) => r.size)].filter((s) => s >= least);
    return { sizes, candidates, constrained: [...candidates.keys()].sort((a, b) => a - b) };
  }

  initialSector(sector: number): Uint8Array {
    return this.initial.subarray(sector * SECTOR, (sector + 1) * SECTOR);
  }
}

function sectorOf(w: GuestWrite, sector: number): Uint8Array {
  if (!w.data) return ZERO_SECTOR;
  const at = sector * SECTOR - w.offset;
  return w.data.subarray(at, at + SECTOR);
}

/**
 * Read back what `exp` constrains and list every sector that breaks it. Below the initial
 * size of a model that starts from an empty layer, sectors no write touched and that the layer
 * maps nowhere come from the backing file (or are zeros), which is their initial content by
 * construction, so they are not read. Past it (space a resize added) everything is read: it
 * must be zeros whatever the backing holds.
 */
export async function verifyContent(device: BlockDevice, model: ContentModel, exp: Expectation): Promise<string[]> {
  if (!exp.sizes.includes(device.size)) {
    return [`image size is ${hex(device.size)}, expected one of ${exp.sizes.map(hex).join(', ')}`];
  }
  const sectors = device.size / SECTOR;
  const mustRead = new Uint8Array(sectors);
  mustRead.fill(1, model.fromEmptyLayer ? model.initialSize / SECTOR : 0);
  for (const s of model.touched) if (s < sectors) mustRead[s] = 1;
  for (const e of await device.blockStatus(0, device.size)) {
    if (e.kind !== 'unallocated') mustRead.fill(1, e.guestOffset / SECTOR, Math.ceil((e.guestOffset + e.length) / SECTOR));
  }
  // Close small gaps: one longer read costs less than two, and every sector must pass anyway.
  for (let end = mustRead.indexOf(0, mustRead.indexOf(1)); end > 0;) {
    const next = mustRead.indexOf(1, end);
    if (next === -1) break;
    if (next - end < READ_GAP_SECTORS) mustRead.fill(1, end, next);
    end = mustRead.indexOf(0, next);
  }
  const problems: string[] = [];
  for (let first = mustRead.indexOf(1); first !== -1 && problems.length <= 4; first = mustRead.indexOf(1, first)) {
    const stop = mustRead.indexOf(0, first);
    const end = stop === -1 ? sectors : stop;
    const got = Buffer.allocUnsafe((end - first) * SECTOR);
    await device.read(got, first * SECTOR);
    // Sectors no write touched must hold their initial content: compare each stretch of them
    // at once, and look sector by sector only at touched ones or where a stretch differs.
    let next = lowerBound(exp.constrained, first);
    for (let s = first; s < end && problems.length <= 4;) {
      const touched = next < exp.constrained.length && exp.constrained[next] === s;
      const stretchEnd = touched ? s + 1 : Math.min(end, exp.constrained[next] ?? end);
      const at = (s - first) * SECTOR;
      const length = (stretchEnd - s) * SECTOR;
      const allowed = touched ? exp.candidates.get(s)! : null;
      const fine = allowed
        ? allowed.some((c) => got.compare(c, 0, SECTOR, at, at + SECTOR) === 0)
        : got.compare(model.initial, s * SECTOR, s * SECTOR + length, at, at + length) === 0;
      if (!fine) {
        for (let bad = s; bad < stretchEnd && problems.length <= 4; bad++) {
          const value = got.subarray((bad - first) * SECTOR, (bad - first + 1) * SECTOR);
          if (!allowed && sameBytes(value, model.initialSector(bad))) continue;
          problems.push(problems.length === 4 ? '...'
            : `guest sector at ${hex(bad * SECTOR)} holds ${describeSector(value, model, bad)}, not one of the ${allowed?.length ?? 1} value(s) a crash may leave`);
        }
      }
      if (touched) next++;
      s = stretchEnd;
    }
    first = end;
  }
  return problems;
}

/** The first index of the ascending `sorted` whose value is at least `value`. */
function lowerBound(sorted: number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function describeSector(value: Uint8Array, model: ContentModel, sector: number): string {
  if (sameBytes(value, ZERO_SECTOR)) return 'zeros';
  if (sameBytes(value, model.initialSector(sector))) return 'its initial (backing) content';
  for (const w of model.log.writes) {
    if (!w.data) continue;
    for (let at = 0; at < w.length; at += SECTOR) {
      if (sameBytes(value, w.data.subarray(at, at + SECTOR))) return `data written for guest ${hex(w.offset + at)}`;
    }
  }
  return 'bytes no write produced';
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

// ---- workloads ----------------------------------------------------------------------------

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

// ---- exploring ----------------------------------------------------------------------------

export interface ExploreOptions {
  /** Every subset of an epoch with at most this many pending operations is tried. */
  exhaustiveUpTo?: number;
  /** Random subsets tried in a larger epoch. */
  randomSubsets?: number;
  /** Says, state by state, whether to ask `qemu-img check` too, and in which directory. */
  qemuSample?: () => string | null;
  /** Stop early once this many violations were found (the broken-engine tests need only a few). */
  stopAfter?: number;
  /** Asked for each crash state with NEED_CHECK set: also crash its repair at every point? */
  repairCrashSample?: () => boolean;
  /** false: judge only the crash states of interrupted repairs (the repair-crash test). */
  judgeWorkloadStates?: boolean;
  /** The repair whose crashes are explored (default: the one openDevice runs). */
  repair?: RepairHook;
}

export interface Violation { where: string; problems: string[] }

export interface ExploreResult {
  /** Crash states judged, those of interrupted repairs included. */
  states: number;
  /** Of which: crash states of a repair interrupted part-way. */
  repairStates: number;
  epochs: number;
  qemuChecks: number;
  violations: Violation[];
}

export function emptyResult(): ExploreResult { return { states: 0, repairStates: 0, epochs: 0, qemuChecks: 0, violations: [] }; }

export function addResult(total: ExploreResult, part: ExploreResult): void {
  total.states += part.states;
  total.repairStates += part.repairStates;
  total.epochs += part.epochs;
  total.qemuChecks += part.qemuChecks;
  total.violations.push(...part.violations);
}

export async function exploreRecording(rec: Recording, options: ExploreOptions = {}): Promise<ExploreResult> {
  const result = emptyResult();
  const rng = new Random(rec.seed ^ 0xc4a5);
  const model = new ContentModel(rec.initialContent, rec.workload.size, rec.guest);
  const disks = new CrashDisk(rec.initialDisk);
  // QEMU refuses table_size 1 (its qed_check_table_offset takes a one-cluster table for an
  // overflow), so such images cannot be shown to it.
  const qemuCanOpen = rec.workload.tableSize > 1;
  const epochs = crashEpochs(rec.log);
  for (const [epochIndex, epoch] of epochs.entries()) {
    result.epochs++;
    const exp = model.expectationAt(epoch.before);
    for (const landed of crashStates(epoch.pending, rng, options)) {
      const disk = disks.materialise(epoch, landed);
      if (options.repairCrashSample && needsCheck(disk) && options.repairCrashSample()) {
        const where = `${rec.workload.name} seed ${rec.seed} epoch ${epochIndex + 1}/${epochs.length}: ${describeLanded(epoch.pending, landed)}, then a crash during its repair`;
        const repair = await exploreRepairCrashes(disk, rec, model, exp, rng, where, options, qemuCanOpen);
        result.states += repair.states;
        result.repairStates += repair.states;
        result.qemuChecks += repair.qemuChecks;
        result.violations.push(...repair.violations);
        if (options.stopAfter !== undefined && result.violations.length >= options.stopAfter) return result;
      }
      if (options.judgeWorkloadStates === false) continue;
      const sample = qemuCanOpen ? options.qemuSample?.() ?? null : null;
      if (sample) writeBackingFiles(rec, sample);
      result.states++;
      const problems = await judgeState(disk, rec, model, exp, rng, sample);
      if (sample) result.qemuChecks++;
      if (problems.length > 0) {
        result.violations.push({
          where: `${rec.workload.name} seed ${rec.seed} epoch ${epochIndex + 1}/${epochs.length}: ${describeLanded(epoch.pending, landed)}`,
          problems,
        });
        if (options.stopAfter !== undefined && result.violations.length >= options.stopAfter) return result;
      }
    }
  }
  return result;
}

/**
 * The subsets of an epoch's pending operations to try: every prefix (a crash part-way), every
 * single omission (one reordered write lost), the last write of each prefix torn three ways,
 * then all subsets of a small epoch or a random sample (some torn) of a large one.
 */
export function* crashStates(pending: readonly DiskOp[], rng: Random, options: ExploreOptions = {}): Generator<LandedOp[]> {
  const n = pending.length;
  const seen = new Set<string>();
  const fresh = (key: string): boolean => !seen.has(key) && !!seen.add(key);
  const whole = (indexes: number[]): LandedOp[] => indexes.map((i) => ({ op: pending[i]! }));
  const upTo = (j: number): number[] => Array.from({ length: j }, (_, i) => i);

  for (let j = 0; j <= n; j++) if (fresh(upTo(j).join())) yield whole(upTo(j));
  for (let skip = 0; skip < n; skip++) {
    const kept = upTo(n).filter((i) => i !== skip);
    if (fresh(kept.join())) yield whole(kept);
  }
  for (let j = 1; j <= n; j++) {
    const last = pending[j - 1]!;
    if (last.kind !== 'write') continue;
    const { first, count } = sectorsOf(last);
    if (count < 2) continue;
    const tears: Array<[string, (s: number) => boolean]> = [
      ['front', (s) => s - first < count / 2],
      ['back', (s) => s - first >= count / 2],
      ['random', randomTear(rng, first, count)],
    ];
    for (const [tear, keeps] of tears) yield [...whole(upTo(j - 1)), { op: last, keeps, tear }];
  }
  const exhaustiveUpTo = options.exhaustiveUpTo ?? 10;
  if (n <= exhaustiveUpTo) {
    for (let mask = 0; mask < 1 << n; mask++) {
      const kept = upTo(n).filter((i) => mask & (1 << i));
      if (fresh(kept.join())) yield whole(kept);
    }
    return;
  }
  for (let k = 0; k < (options.randomSubsets ?? 400); k++) {
    const kept = upTo(n).filter(() => rng.chance(0.5));
    const landed = whole(kept);
    const writes = landed.filter((l) => l.op.kind === 'write' && sectorsOf(l.op).count > 1);
    if (writes.length > 0 && rng.chance(0.3)) {
      const torn = writes[rng.int(writes.length)]!;
      const { first, count } = sectorsOf(torn.op as WriteOp);
      torn.keeps = randomTear(rng, first, count);
      torn.tear = 'random';
    } else if (!fresh(kept.join())) continue;
    yield landed;
  }
}

/** A random proper, non-empty choice of sectors (a torn write kept all or none is no tear). */
function randomTear(rng: Random, first: number, count: number): (s: number) => boolean {
  const keep = new Uint8Array(count);
  for (let i = 0; i < count; i++) keep[i] = rng.chance(0.5) ? 1 : 0;
  keep[rng.int(count)] = 1;
  keep[(rng.int(count - 1) + 1 + keep.indexOf(1)) % count] = 0;
  return (s) => keep[s - first] === 1;
}

function describeLanded(pending: readonly DiskOp[], landed: readonly LandedOp[]): string {
  const ops = pending.map((op) => {
    const l = landed.find((x) => x.op === op);
    const what = op.kind === 'write' ? `write ${hex(op.offset)}+${hex(op.bytes.length)}` : `truncate ${hex(op.size)}`;
    return `${l ? (l.keeps ? `TORN(${l.tear})` : 'LANDED') : 'lost'} ${what}`;
  });
  return `crash with [${ops.join('; ')}]`;
}

/**
 * Crash the NEED_CHECK repair of `disk` at every point (check.ts promises that this is safe):
 * whatever the interrupted repair left must judge exactly as `disk` itself must, since a
 * repair may drop only what was never durable.
 */
async function exploreRepairCrashes(disk: MemoryFile, rec: Recording, model: ContentModel, exp: Expectation, rng: Random,
  where: string, options: ExploreOptions, qemuCanOpen: boolean): Promise<{ states: number; qemuChecks: number; violations: Violation[] }> {
  const file = new CrashFile(disk, new EventClock());
  const violations: Violation[] = [];
  try {
    await (options.repair ?? repairOnOpen)(file, (await readHeader(file)).header);
  } catch {
    return { states: 0, qemuChecks: 0, violations }; // an unrepairable state is the main judge's finding, not this one's
  }
  const disks = new CrashDisk(disk);
  let states = 0;
  let qemuChecks = 0;
  for (const epoch of crashEpochs(file.log)) {
    for (const landed of crashStates(epoch.pending, rng)) {
      states++;
      const sample = qemuCanOpen ? options.qemuSample?.() ?? null : null;
      if (sample) { qemuChecks++; writeBackingFiles(rec, sample); }
      const problems = await judgeState(disks.materialise(epoch, landed), rec, model, exp, rng, sample);
      if (problems.length > 0) violations.push({ where: `${where} [${describeLanded(epoch.pending, landed)}]`, problems });
    }
  }
  return { states, qemuChecks, violations };
}

/** QEMU opens the backing file by its name next to the image: put the recording's there. */
function writeBackingFiles(rec: Recording, dir: string): void {
  for (const [path, file] of rec.backingFiles) writeFileSync(join(dir, path.split('/').pop()!), bytesOf(file));
}

function needsCheck(disk: MemoryFile): boolean {
  const fields = new Uint8Array(24);
  disk.readSync(fields, 0);
  return (new DataView(fields.buffer).getBigUint64(16, true) & QED_F_NEED_CHECK) !== 0n;
}

// ---- judging one crash state ------------------------------------------------------------

async function judgeState(disk: MemoryFile, rec: Recording, model: ContentModel, exp: Expectation, rng: Random, qemuDir: string | null): Promise<string[]> {
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

// ---- runs: seeds, soak, targets, worker threads ------------------------------------------

/** QED_CRASH_SEED repeats a run; otherwise each run explores new states. */
export function crashSeed(): number {
  const fixed = Number(process.env['QED_CRASH_SEED']);
  return Number.isSafeInteger(fixed) && fixed > 0 ? fixed : 1 + Math.floor(Math.random() * 1e9);
}

/** QED_CRASH_SOAK=N multiplies the exploration twenty-fold per N (millions of states). */
export function soakFactor(): number {
  const soak = process.env['QED_CRASH_SOAK'];
  if (soak === undefined || soak === '' || soak === '0') return 1;
  const n = Number(soak);
  return 20 * (Number.isFinite(n) && n > 0 ? n : 1);
}

const QEMU_SAMPLES_PER_RUN = 100;

export interface RunOptions {
  /** Explore this (deliberately broken) engine instead of QedImage. */
  imageClass?: typeof QedImage;
  /** Crash this (deliberately broken) repair instead of the real one. */
  repair?: RepairHook;
  log?: (line: string) => void;
  /**
   * 'workload' (default): judge the workloads' crash states, and crash the repair of one
   * dirty state in 100 as well. 'repair': judge only crashes inside the repairs, of one
   * dirty state in 6; the target then counts those.
   */
  focus?: 'workload' | 'repair';
}

/**
 * Explore the workloads round after round, each round with new seeds, until `targetStates`
 * crash states were judged (times the soak factor). About 100 of them also go to QEMU.
 */
export async function exploreUntil(label: string, workloads: Workload[], targetStates: number, run: RunOptions = {}): Promise<ExploreResult> {
  const log = run.log ?? console.log;
  const repairsOnly = run.focus === 'repair';
  const seed = crashSeed();
  const target = targetStates * soakFactor();
  log(`crash explorer (${label}): seed ${seed}, target ${target} states (QED_CRASH_SEED=${seed} repeats this run)`);
  const dir = mkdtempSync('/dev/shm/qed-crash-');
  const every = Math.max(1, Math.floor(targetStates / QEMU_SAMPLES_PER_RUN));
  const repairEvery = repairsOnly ? 6 : 100;
  let qemuCounter = 0;
  let dirtyCounter = 0;
  const options: ExploreOptions = {
    stopAfter: 20,
    qemuSample: () => (qemuCounter++ % every === 0 ? dir : null),
    repairCrashSample: () => dirtyCounter++ % repairEvery === 0,
    judgeWorkloadStates: !repairsOnly,
    repair: run.repair,
  };
  const counted = (r: ExploreResult) => (repairsOnly ? r.repairStates : r.states - r.repairStates);
  const total = emptyResult();
  const perWorkload = workloads.map(() => ({ states: 0, ms: 0 }));
  try {
    for (let round = 0; counted(total) < target && total.violations.length === 0; round++) {
      for (const [i, workload] of workloads.entries()) {
        const started = performance.now();
        const rec = await recordWorkload(workload, seed + round * 7919 + i * 104729, run.imageClass);
        const part = await exploreRecording(rec, options);
        addResult(total, part);
        perWorkload[i]!.states += part.states;
        perWorkload[i]!.ms += performance.now() - started;
        // Every workload runs at least once; after that, stop as soon as the target is met.
        if (total.violations.length > 0 || (round > 0 && counted(total) >= target)) break;
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (process.env['QED_CRASH_VERBOSE']) {
    for (const [i, w] of workloads.entries()) {
      const { states, ms } = perWorkload[i]!;
      log(`  ${w.name}: ${states} states, ${(ms / 1000).toFixed(1)} s, ${states ? Math.round(ms * 1000 / states) : 0} us/state`);
    }
  }
  for (const v of total.violations.slice(0, 5)) log(`VIOLATION ${v.where}\n  ${v.problems.join('\n  ')}`);
  return total;
}

/** Where a worker thread finds workloads: the export `exportName` of the module at `moduleUrl`. */
export interface WorkloadSource { moduleUrl: string; exportName: string }

/**
 * exploreUntil on a worker thread. node:test tracks every promise of a test file with an
 * async hook, which costs the explorer (millions of promises) about 40% of its time; a worker
 * thread has no such hook. The modules must not start tests when imported off the main thread.
 */
export function exploreInWorker(sources: WorkloadSource[], label: string, targetStates: number, focus: RunOptions['focus'] = 'workload'): Promise<ExploreResult> {
  return new Promise((resolve, reject) => {
    const job: ExploreJob = { sources, label, targetStates, focus };
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    let result: ExploreResult | null = null;
    worker.on('message', (message: { log?: string; result?: ExploreResult }) => {
      if (message.log !== undefined) console.log(message.log);
      if (message.result) result = message.result;
    });
    worker.on('error', reject);
    worker.on('exit', (code) => (result ? resolve(result) : reject(new Error(`explorer worker exited with code ${code} and no result`))));
  });
}

interface ExploreJob { sources: WorkloadSource[]; label: string; targetStates: number; focus: RunOptions['focus'] }

async function runExploreJob(job: ExploreJob): Promise<void> {
  const workloads: Workload[] = [];
  for (const { moduleUrl, exportName } of job.sources) {
    workloads.push(...((await import(moduleUrl)) as Record<string, Workload[]>)[exportName]!);
  }
  const result = await exploreUntil(job.label, workloads, job.targetStates, { focus: job.focus, log: (line) => parentPort!.postMessage({ log: line }) });
  parentPort!.postMessage({ result });
}


export function reportLine(label: string, r: ExploreResult): string {
  return `crash explorer: ${r.states} states, ${r.violations.length} violations (${label}: ${r.states - r.repairStates} crash states of ${r.epochs} flush epochs`
    + ` and ${r.repairStates} of repairs interrupted in turn; ${r.qemuChecks} also checked by qemu-img)`;
}

// ---- QEMU as the second judge --------------------------------------------------------------

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
function qemuJudge(dir: string, beforeRepair: Uint8Array, afterRepair: Uint8Array): string[] {
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

export function bytesOf(file: MemoryFile): Uint8Array {
  const bytes = new Uint8Array(file.sizeSync);
  file.readSync(bytes, 0);
  return bytes;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// The worker-thread entry of exploreInWorker.
if (!isMainThread && (workerData as Partial<ExploreJob> | null)?.sources) {
  runExploreJob(workerData as ExploreJob).catch((err: unknown) => { throw err; });
}
