// Support for the interop tests: running QEMU's tools (qemu-img, qemu-io) and our `qed` CLI
// as child processes, scratch directories under /dev/shm, a seeded random workload expressed
// both as qemu-io commands and as library calls, and byte comparisons of whole images.
//
// QEMU is the oracle here, so the helpers never interpret what QEMU says beyond capturing it:
// each test states what it expects of the output.
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '../../src/io/node-default.js';
import { createImage } from '../../src/ops/create.js';
import { openDevice } from '../../src/ops/open.js';
import type { BlockDevice } from '../../src/engine/device.js';

// ---- processes ---------------------------------------------------------------------------

export interface RunResult {
  stdout: string;
  stderr: string;
  /** The exit status; a process killed by a signal reports -1. */
  code: number;
}

export interface RunOptions {
  cwd?: string;
  /** What the program reads on standard input; without it, standard input is closed at once. */
  input?: string;
}

/** The CLI as installed (the package's bin, bundled by scripts/bundle-cli.mjs): dist/test/support → dist/src/cli/qed.cjs. */
export const QED_CLI = fileURLToPath(new URL('../../src/cli/qed.cjs', import.meta.url));

/** Run a program without a shell; a non-zero exit is a result, not an exception. */
export function run(program: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(program, args, { cwd: options.cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number' && err.signal == null) {
        reject(new Error(`could not run ${program}: ${err.message}`));
        return;
      }
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ stdout, stderr, code });
    });
    // A program that exits without reading its input must not fail the run with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.input ?? '');
  });
}

export const qemuImg = (args: readonly string[], options?: RunOptions): Promise<RunResult> => run('qemu-img', args, options);
export const qemuIo = (args: readonly string[], options?: RunOptions): Promise<RunResult> => run('qemu-io', args, options);
export const qed = (args: readonly string[], options?: RunOptions): Promise<RunResult> => run(process.execPath, [QED_CLI, ...args], options);

/** What a failed run said, for assertion messages. */
export function describeRun(what: string, result: RunResult): string {
  return `${what} exited ${result.code}\n--- stdout\n${result.stdout}--- stderr\n${result.stderr}`;
}

/** The run must exit 0; its output is returned for further checks. */
export async function succeed(what: string, pending: Promise<RunResult>): Promise<RunResult> {
  const result = await pending;
  if (result.code !== 0) throw new Error(describeRun(what, result));
  return result;
}

/** `-c CMD` pairs for qemu-io and `qed io`. */
export function commandArgs(commands: readonly string[]): string[] {
  return commands.flatMap((c) => ['-c', c]);
}

/** qemu-io's statistics line ends in timings that differ from run to run; keep the rest. */
export function withoutTimings(output: string): string {
  return output.replace(/ ops; [0-9:.]+ sec \([^)]*\)$/gm, ' ops; <timing>');
}

// ---- scratch space -------------------------------------------------------------------------

/** A fresh directory under /dev/shm; the caller removes it with removeScratchDir. */
export function newScratchDir(): Promise<string> {
  return mkdtemp(join('/dev/shm', 'qed-interop-'));
}

export function removeScratchDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}

/** A fresh directory under /dev/shm, removed when the test ends. */
export async function scratchDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await newScratchDir();
  t.after(() => removeScratchDir(dir));
  return dir;
}

// ---- seeded randomness ---------------------------------------------------------------------

/** The run's base seed: QED_INTEROP_SEED to replay a failure, else a fixed default. */
export const BASE_SEED = Number(process.env.QED_INTEROP_SEED ?? 0x5eed1ed);

/** mulberry32: small, fast, and the same sequence on every platform. */
export class Rng {
  private state: number;
  constructor(readonly seed: number) { this.state = seed >>> 0; }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number { return lo + Math.floor(this.next() * (hi - lo + 1)); }
  pick<T>(items: readonly T[]): T { return items[this.int(0, items.length - 1)]!; }
  chance(p: number): boolean { return this.next() < p; }
  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i += 4) {
      const word = Math.floor(this.next() * 4294967296);
      for (let k = 0; k < 4 && i + k < length; k++) out[i + k] = (word >>> (8 * k)) & 0xff;
    }
    return out;
  }
}

/** A per-case seed derived from the base seed and the case's name, so cases are independent. */
export function caseSeed(name: string): number {
  let h = BASE_SEED >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

// ---- workloads -----------------------------------------------------------------------------

export type Op =
  | { kind: 'write'; offset: number; length: number; pattern: number }
  | { kind: 'zero'; offset: number; length: number; unmap: boolean }
  | { kind: 'discard'; offset: number; length: number };

export interface WorkloadShape {
  size: number;
  clusterSize: number;
  tableSize: number;
  count: number;
  /** The layer has a backing file (matters only for avoidZeroClusterCow). */
  hasBacking: boolean;
  /**
   * QEMU 7.2 quirk: a partial write into a zero cluster (L2 entry 1) of an image with a
   * backing file copies the backing data around it instead of zeros, so QEMU's own image no
   * longer matches a raw file given the same commands. Workloads run through QEMU avoid that
   * pattern (the tests that prove our engine gets it right do not).
   */
  avoidZeroClusterCow: boolean;
}

type ClusterState = 'unallocated' | 'zero' | 'data';

/**
 * Dozens of writes, zero writes (cluster-aligned and not, with and without -u) and discards,
 * clustered around cluster and L2-table boundaries and the image's tail so that they overlap:
 * rewrites of allocated clusters, zero writes over data, writes into zero clusters, partial
 * clusters at the end of an image whose size is not a cluster multiple. Each op touches at
 * most four clusters, far from QEMU's 4096-cluster allocation bug.
 */
export function makeWorkload(rng: Rng, shape: WorkloadShape): Op[] {
  const { size, clusterSize: cs } = shape;
  const l2Span = (shape.tableSize * cs / 8) * cs;
  const anchors = [0, cs, 2 * cs, Math.floor(size / 2 / cs) * cs, size - cs, size - 1];
  if (l2Span < size) anchors.push(l2Span, l2Span - cs);
  const states = new Map<number, ClusterState>();
  const stateOf = (c: number): ClusterState => states.get(c) ?? 'unallocated';
  const ops: Op[] = [];
  while (ops.length < shape.count) {
    const op = candidate(rng, shape, anchors);
    if (shape.avoidZeroClusterCow && shape.hasBacking && partialOverZeroCluster(op, cs, size, stateOf)) continue;
    trackQemuState(op, cs, size, states, stateOf);
    ops.push(op);
  }
  return ops;
}

function candidate(rng: Rng, shape: WorkloadShape, anchors: number[]): Op {
  const { size, clusterSize: cs } = shape;
  const kind = rng.pick(['write', 'write', 'write', 'write', 'zero', 'zero', 'discard'] as const);
  const alignment = kind === 'zero' && rng.chance(0.5) ? cs : rng.pick([cs, 512, 512, 1]);
  let offset = Math.max(0, Math.min(size - 1, rng.pick(anchors) + rng.int(-cs, 2 * cs)));
  offset -= offset % alignment;
  let length = alignment === cs ? cs * rng.int(1, 3) : alignment * rng.int(1, Math.floor(3 * cs / alignment));
  length = Math.min(length, size - offset);
  if (kind === 'write') return { kind, offset, length, pattern: rng.int(1, 255) };
  if (kind === 'zero') return { kind, offset, length, unmap: rng.chance(0.3) };
  return { kind, offset, length };
}

/** Clusters [first, last] that the op covers, and which of those it covers only in part. */
function coverage(op: Op, cs: number, size: number): { first: number; last: number; whole: (c: number) => boolean } {
  const end = op.offset + op.length;
  const first = Math.floor(op.offset / cs);
  const last = Math.floor((end - 1) / cs);
  // QEMU zeroes a cluster without writing it only when the request covers it entirely and it is
  // a full cluster; the short last cluster of an image is always written as data.
  return { first, last, whole: (c) => c * cs >= op.offset && (c + 1) * cs <= end && (c + 1) * cs <= size };
}

function partialOverZeroCluster(op: Op, cs: number, size: number, stateOf: (c: number) => ClusterState): boolean {
  if (op.kind === 'discard' || op.length === 0) return false;
  const { first, last, whole } = coverage(op, cs, size);
  for (let c = first; c <= last; c++) {
    if (!whole(c) && stateOf(c) === 'zero') return true;
  }
  return false;
}

/** Cluster states as QEMU 7.2 leaves them (NOTES §4 and §10). */
function trackQemuState(op: Op, cs: number, size: number, states: Map<number, ClusterState>, stateOf: (c: number) => ClusterState): void {
  if (op.kind === 'discard' || op.length === 0) return;
  const { first, last, whole } = coverage(op, cs, size);
  for (let c = first; c <= last; c++) {
    if (op.kind === 'write' || !whole(c)) states.set(c, 'data');
    else if (stateOf(c) === 'unallocated') states.set(c, 'zero');
  }
}

/** One op as a qemu-io / `qed io` command. */
export function ioCommand(op: Op): string {
  switch (op.kind) {
    case 'write': return `write -P 0x${op.pattern.toString(16)} ${op.offset} ${op.length}`;
    case 'zero': return `write -z${op.unmap ? ' -u' : ''} ${op.offset} ${op.length}`;
    case 'discard': return `discard ${op.offset} ${op.length}`;
  }
}

/**
 * The commands for a raw reference file. Discard is left out: file-posix punches a hole for
 * it (the range then reads zeros) while QED, QEMU's and ours, ignores it and keeps the data.
 * Both are allowed for an advisory discard; the QED behaviour is the one the tests pin down.
 */
export function rawReferenceCommands(ops: readonly Op[]): string[] {
  return ops.filter((op) => op.kind !== 'discard').map(ioCommand);
}

export async function applyToDevice(device: BlockDevice, op: Op): Promise<void> {
  switch (op.kind) {
    case 'write': return device.write(new Uint8Array(op.length).fill(op.pattern), op.offset);
    case 'zero': return device.writeZeroes(op.offset, op.length, { mayUnmap: op.unmap });
    case 'discard': return device.discard(op.offset, op.length);
  }
}

/** What a reader must see after the op, in a plain buffer (discard changes nothing). */
export function applyToModel(model: Uint8Array, op: Op): void {
  if (op.kind === 'write') model.fill(op.pattern, op.offset, op.offset + op.length);
  else if (op.kind === 'zero') model.fill(0, op.offset, op.offset + op.length);
}

/**
 * Split the ops into batches whose byte ranges are pairwise disjoint (they may still share
 * clusters), keeping order between overlapping ops: running a batch concurrently must give
 * the same bytes as running it in order.
 */
export function disjointBatches(ops: readonly Op[]): Op[][] {
  const batches: Op[][] = [];
  for (const op of ops) {
    const current = batches[batches.length - 1];
    const overlaps = current?.some((o) => o.offset < op.offset + op.length && op.offset < o.offset + o.length);
    if (!current || overlaps) batches.push([op]);
    else current.push(op);
  }
  return batches;
}

/**
 * `read -P` commands over ranges where the model is one repeated byte, taken from the last
 * ops: the written pattern, or zeros, still in place.
 */
export function spotChecks(model: Uint8Array, ops: readonly Op[], limit: number): string[] {
  const checks: string[] = [];
  for (let i = ops.length - 1; i >= 0 && checks.length < limit; i--) {
    const op = ops[i]!;
    if (op.kind === 'discard' || op.length === 0) continue;
    const expected = op.kind === 'write' ? op.pattern : 0;
    const slice = model.subarray(op.offset, op.offset + op.length);
    if (slice.every((b) => b === expected)) checks.push(`read -P 0x${expected.toString(16)} ${op.offset} ${op.length}`);
  }
  return checks;
}

// ---- files and comparisons -------------------------------------------------------------------

/** Write `bytes` as a raw file, then make it `size` bytes long (zeros past the bytes). */
export async function writeRawFile(path: string, bytes: Uint8Array, size = bytes.length): Promise<void> {
  await writeFile(path, bytes.subarray(0, Math.min(bytes.length, size)));
  const handle = await open(path, 'r+');
  try { await handle.truncate(size); } finally { await handle.close(); }
}

const CHUNK = 1024 * 1024;

/**
 * Compare a device's guest bytes with a raw file over the whole device. Returns null when
 * identical, else a line naming the first differing offset. The file may be longer (its tail
 * is ignored) but not shorter.
 */
export async function firstDifference(device: BlockDevice, rawPath: string): Promise<string | null> {
  const handle = await open(rawPath, 'r');
  try {
    const rawSize = (await handle.stat()).size;
    if (rawSize < device.size) return `raw file is ${rawSize} bytes, the device ${device.size}`;
    const ours = Buffer.alloc(CHUNK);
    const theirs = Buffer.alloc(CHUNK);
    for (let offset = 0; offset < device.size; offset += CHUNK) {
      const length = Math.min(CHUNK, device.size - offset);
      await device.read(ours.subarray(0, length), offset);
      await handle.read(theirs, 0, length, offset);
      const found = describeMismatch(ours.subarray(0, length), theirs.subarray(0, length), offset, 'raw');
      if (found) return found;
    }
    return null;
  } finally {
    await handle.close();
  }
}

function describeMismatch(ours: Uint8Array, theirs: Uint8Array, base: number, what: string): string | null {
  if (Buffer.from(ours.buffer, ours.byteOffset, ours.length).equals(theirs)) return null;
  const i = ours.findIndex((b, k) => b !== theirs[k]);
  const at = base + i;
  return `first difference at offset ${at} (0x${at.toString(16)}): device 0x${ours[i]!.toString(16)}, ${what} 0x${theirs[i]!.toString(16)}`;
}

/** Object keys in order, for comparing JSON key order. */
export function keysOf(value: unknown): string[] {
  return value !== null && typeof value === 'object' ? Object.keys(value) : [];
}

export const KiB = 1024;
export const MiB = 1024 * 1024;

// ---- scenarios: an image, its backing chain, its workload and a raw reference -----------------

/**
 * none: a plain image. raw: over a raw file as long as the image. short-raw: over a raw file
 * shorter than the image. qed-over-raw: over a QED image (same size, written too) over a raw
 * file shorter than both.
 */
export type BackingKind = 'none' | 'raw' | 'short-raw' | 'qed-over-raw';

/** Who creates and writes the QED layers. */
export type Writer = 'qemu' | 'library' | 'library-concurrent' | 'cli';

export interface Layout {
  clusterSize: number;
  tableSize: number;
  /** Guest size; the matrix uses sizes that are not a cluster multiple. */
  size: number;
  backing: BackingKind;
  /** Length of the raw bottom file when it is shorter than the image (default: not a sector multiple). */
  shortLength?: number;
  ops?: number;
}

export interface Scenario {
  dir: string;
  /** The top image, and the layers under it, as file names inside dir. */
  top: string;
  mid?: string;
  base?: string;
  /** dir/ref.raw: the bottom file's bytes, then every layer's commands through qemu-io -f raw (absent when not asked for). */
  reference: string;
  /** The same bytes in memory. */
  model: Uint8Array;
  topOps: Op[];
  midOps: Op[];
  seed: number;
}

export function layoutName(layout: Layout): string {
  return `cluster ${layout.clusterSize / KiB} KiB, table_size ${layout.tableSize}, size ${layout.size}, backing ${layout.backing}`;
}

export function defaultShortLength(size: number): number {
  return Math.floor(size * 0.4) + 1000; // not a multiple of 512: QEMU pads it with zeros to a sector
}

/**
 * Build the chain, write every layer with `writer`, and (unless `withReference` is false) the
 * raw reference with qemu-io -f raw.
 */
export async function buildScenario(dir: string, layout: Layout, writer: Writer, name: string, withReference = true): Promise<Scenario> {
  const seed = caseSeed(name);
  const rng = new Rng(seed);
  const { size, clusterSize, tableSize } = layout;
  const count = layout.ops ?? (clusterSize >= MiB ? 24 : 40);
  const model = new Uint8Array(size);
  let base: string | undefined;
  let mid: string | undefined;
  let topBacking: { name: string; format: 'raw' | 'qed' } | undefined;
  if (layout.backing !== 'none') {
    const length = layout.backing === 'raw' ? size : (layout.shortLength ?? defaultShortLength(size));
    const bytes = rng.bytes(length);
    base = 'base.raw';
    await writeRawFile(join(dir, base), bytes);
    model.set(bytes.subarray(0, Math.min(length, size)));
    topBacking = { name: base, format: 'raw' };
  }
  let midOps: Op[] = [];
  if (layout.backing === 'qed-over-raw') {
    mid = 'mid.qed';
    await createLayer(dir, mid, layout, { name: base!, format: 'raw' }, writer);
    midOps = makeWorkload(rng, { size, clusterSize, tableSize, count, hasBacking: true, avoidZeroClusterCow: writer === 'qemu' });
    await writeLayer(dir, mid, midOps, writer);
    topBacking = { name: mid, format: 'qed' };
  }
  const top = 'top.qed';
  await createLayer(dir, top, layout, topBacking, writer);
  const topOps = makeWorkload(rng, { size, clusterSize, tableSize, count, hasBacking: topBacking !== undefined, avoidZeroClusterCow: writer === 'qemu' });
  await writeLayer(dir, top, topOps, writer);

  for (const op of [...midOps, ...topOps]) applyToModel(model, op);
  const reference = join(dir, 'ref.raw');
  if (!withReference) return { dir, top, mid, base, reference, model, topOps, midOps, seed };
  await writeRawFile(reference, base ? await readPrefix(join(dir, base), size) : new Uint8Array(0), size);
  const commands = rawReferenceCommands([...midOps, ...topOps]);
  await succeed('qemu-io -f raw (reference)', qemuIo(['-f', 'raw', ...commandArgs(commands), reference]));
  return { dir, top, mid, base, reference, model, topOps, midOps, seed };
}

async function readPrefix(path: string, limit: number): Promise<Uint8Array> {
  const handle = await open(path, 'r');
  try {
    const size = Math.min(limit, (await handle.stat()).size);
    const buf = new Uint8Array(size);
    await handle.read(buf, 0, size, 0);
    return buf;
  } finally {
    await handle.close();
  }
}

async function createLayer(dir: string, name: string, layout: Layout, backing: { name: string; format: 'raw' | 'qed' } | undefined, writer: Writer): Promise<void> {
  const { size, clusterSize, tableSize } = layout;
  if (writer === 'library' || writer === 'library-concurrent') {
    await createImage(join(dir, name), { format: 'qed', size, clusterSize, tableSize, backingFile: backing?.name, backingFormat: backing?.format });
    return;
  }
  const args = ['create', '-q', '-f', 'qed', '-o', `cluster_size=${clusterSize},table_size=${tableSize}`];
  if (backing) args.push('-b', backing.name, '-F', backing.format);
  args.push(name, String(size));
  if (writer === 'qemu') await succeed('qemu-img create', qemuImg(args, { cwd: dir }));
  else await succeed('qed create', qed(args, { cwd: dir }));
}

async function writeLayer(dir: string, name: string, ops: readonly Op[], writer: Writer): Promise<void> {
  if (ops.length === 0) return;
  const commands = commandArgs(ops.map(ioCommand));
  if (writer === 'qemu') {
    await succeed('qemu-io', qemuIo(['-f', 'qed', ...commands, name], { cwd: dir }));
  } else if (writer === 'cli') {
    await succeed('qed io', qed(['io', '-f', 'qed', ...commands, name], { cwd: dir }));
  } else {
    const device = await openDevice(join(dir, name));
    try {
      if (writer === 'library') {
        for (const op of ops) await applyToDevice(device, op);
      } else {
        for (const batch of disjointBatches(ops)) await Promise.all(batch.map((op) => applyToDevice(device, op)));
      }
    } finally {
      await device.close();
    }
  }
}
