// Scenario generation and execution for the engine-vs-model property test: random images
// (geometry, size, backing chain, cache size) and random steps (batches of concurrent
// requests, with FUA, NO_HOLE and FAST_ZERO among their options; reopens; close() called
// with a batch still in flight; batches of writes and write-zeroes that overlap), run against
// the engine on a JitterStore and against DiskModel.
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { QedError } from '../../src/base/errors.js';
import { checkImage } from '../../src/check/check.js';
import type { BlockDevice } from '../../src/engine/device.js';
import { readHeader } from '../../src/engine/open.js';
import { QedImage } from '../../src/engine/qed-image.js';
import { openDevice } from '../../src/ops/open.js';
import { createImage } from '../../src/ops/create.js';
import { JitterStore } from './jitter-store.js';
import { DiskModel, firstDifference, pattern } from './model.js';

export type BackingKind = 'none' | 'raw' | 'raw-probed' | 'qed-over-raw';
export type OpKind = 'read' | 'write' | 'zero' | 'discard' | 'flush' | 'grow';

/** An operation before it is placed: positions are relative to anchors resolved at run time. */
export interface OpSpec {
  kind: OpKind;
  /** 0 image start, 1 a cluster boundary, 2 an L2-table boundary, 3 the image end, 4 a table-chunk boundary. */
  anchor: number;
  anchorIndex: number;
  /** In eighths of a cluster. */
  deltaUnits: number;
  lengthUnits: number;
  /** Extra bytes, so that requests are also unaligned to sectors. */
  oddBytes: number;
  seed: number;
  mayUnmap: boolean;
  /** Write and write-zeroes options (write-zeroes only for the last two). */
  fua: boolean;
  noHole: boolean;
  fastZero: boolean;
}

export type Step =
  | { kind: 'batch'; ops: OpSpec[] }
  | { kind: 'reopen'; cacheChoice: number }
  /** The batch's requests are started, close() is called at once, then all are awaited; then a reopen. */
  | { kind: 'closeInFlight'; ops: OpSpec[]; cacheChoice: number }
  /** Writes, write-zeroes and reads around one anchor, overlapping each other, all at once. */
  | { kind: 'overlap'; ops: OpSpec[] };

export interface Scenario {
  clusterShift: number;
  tableSize: number;
  /** Image size as a fraction (per 1000) of the largest size the geometry gets here. */
  sizePermille: number;
  backing: BackingKind;
  /** Backing (and middle) sizes as a fraction of the overlay size, per 1000 of 2x. */
  backingPermille: number;
  middlePermille: number;
  backingPieces: Array<{ permille: number; length: number; seed: number }>;
  middleWrites: Array<{ permille: number; length: number; seed: number }>;
  cacheChoice: number;
  idleFlush: boolean;
  jitterSeed: number;
  steps: Step[];
}

/** Cache sizes to open with: the default, and tiny ones that force eviction and writeback. */
export const CACHE_CHOICES: Array<number | undefined> = [undefined, 1, 16 * 1024, 40 * 1024, 256 * 1024];

function opSpecArb(anchors: number[]): fc.Arbitrary<OpSpec> {
  return fc.record({
    kind: fc.constantFrom<OpKind>('read', 'read', 'write', 'write', 'write', 'zero', 'zero', 'discard', 'flush', 'grow'),
    anchor: fc.constantFrom(...anchors),
    anchorIndex: fc.nat(1000),
    deltaUnits: fc.integer({ min: -16, max: 16 }),
    lengthUnits: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 24 })),
    oddBytes: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 511 })),
    seed: fc.nat(),
    mayUnmap: fc.boolean(),
    fua: rarely,
    noHole: rarely,
    fastZero: rarely,
  });
}

/** True one time in four. */
const rarely = fc.constantFrom(false, false, false, true);

/** Requests around one anchor, so that they overlap: the anchor of the first is everyone's. */
function overlapOpsArb(anchors: number[], maxOps: number): fc.Arbitrary<OpSpec[]> {
  const kinds = fc.constantFrom<OpKind>('write', 'write', 'zero', 'zero', 'read');
  return fc.array(opSpecArb(anchors).chain((op) => kinds.map((kind) => ({ ...op, kind }))), { minLength: 2, maxLength: maxOps })
    .map((ops) => ops.map((op) => ({ ...op, anchor: ops[0]!.anchor, anchorIndex: ops[0]!.anchorIndex, deltaUnits: op.deltaUnits % 9 })));
}

function stepArb(anchors: number[], maxOps: number): fc.Arbitrary<Step> {
  const ops = fc.array(opSpecArb(anchors), { minLength: 1, maxLength: maxOps });
  const cacheChoice = fc.nat(CACHE_CHOICES.length - 1);
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('batch' as const), ops }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('reopen' as const), cacheChoice }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('closeInFlight' as const), ops, cacheChoice }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('overlap' as const), ops: overlapOpsArb(anchors, maxOps) }) },
  );
}

const piece = fc.record({ permille: fc.nat(1000), length: fc.integer({ min: 1, max: 200_000 }), seed: fc.nat() });

/** Everything: all geometries, sizes from one sector up, every backing kind and cache size. */
export const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  clusterShift: fc.integer({ min: 12, max: 16 }),
  tableSize: fc.constantFrom(1, 2, 4, 16),
  sizePermille: fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 1000 })),
  backing: fc.constantFrom<BackingKind>('none', 'none', 'raw', 'raw-probed', 'qed-over-raw'),
  backingPermille: fc.nat(1000),
  middlePermille: fc.nat(1000),
  backingPieces: fc.array(piece, { maxLength: 4 }),
  middleWrites: fc.array(piece, { maxLength: 3 }),
  cacheChoice: fc.nat(CACHE_CHOICES.length - 1),
  idleFlush: fc.boolean(),
  jitterSeed: fc.nat(),
  steps: fc.array(stepArb([0, 1, 1, 2, 2, 3, 4, 4], 8), { minLength: 1, maxLength: 10 }),
});

/**
 * Cache pressure: small clusters and large images, so that requests land in many different
 * 4 KiB table chunks, with the smallest cache the engine allows (four chunks). Dirty chunks
 * must then be written back to make room, while other requests are in flight.
 */
export const pressureScenarioArb: fc.Arbitrary<Scenario> = fc.record({
  clusterShift: fc.integer({ min: 12, max: 13 }),
  tableSize: fc.constantFrom(1, 2, 4, 16),
  sizePermille: fc.integer({ min: 400, max: 1000 }),
  backing: fc.constantFrom<BackingKind>('none', 'raw', 'qed-over-raw'),
  backingPermille: fc.nat(1000),
  middlePermille: fc.nat(1000),
  backingPieces: fc.array(piece, { maxLength: 4 }),
  middleWrites: fc.array(piece, { maxLength: 3 }),
  cacheChoice: fc.constant(1),
  idleFlush: fc.boolean(),
  jitterSeed: fc.nat(),
  steps: fc.array(stepArb([2, 4, 4, 4], 10), { minLength: 1, maxLength: 6 }),
});

/** Where the geometry's interesting boundaries are, and how big an image may get here. */
export class Layout {
  readonly cs: number;
  readonly bytesPerL2: number;
  /** Guest bytes whose L2 entries share one 4 KiB chunk of the table cache. */
  readonly chunkCoverage: number;
  readonly capacity: number;
  /** Largest image the test uses: a few L2 tables where they are small, some clusters otherwise. */
  readonly maxSize: number;

  constructor(readonly clusterShift: number, readonly tableSize: number) {
    this.cs = 2 ** clusterShift;
    const entries = (tableSize * this.cs) / 8;
    this.bytesPerL2 = entries * this.cs;
    this.capacity = entries * this.bytesPerL2;
    // Six 4 KiB table chunks' worth of guest space where that is small (so that a tiny cache
    // overflows with dirty chunks), and at least a few L2 tables where those are small.
    this.chunkCoverage = 512 * this.cs;
    const wanted = Math.max(Math.min(6 * this.chunkCoverage, 24 * 1024 * 1024), Math.min(2.5 * this.bytesPerL2, 6 * 1024 * 1024));
    this.maxSize = Math.min(this.capacity, Math.floor(wanted / 512) * 512);
  }

  sizeFromPermille(permille: number, atLeast = 512): number {
    const sectors = Math.max(atLeast / 512, Math.round((this.maxSize / 512) * permille / 1000));
    return sectors * 512;
  }
}

export interface PlacedOp { spec: OpSpec; offset: number; length: number; newSize?: number }

/** Resolve anchors against the current size; clamp into the image. */
export function place(spec: OpSpec, size: number, layout: Layout): PlacedOp {
  const { cs, bytesPerL2 } = layout;
  if (spec.kind === 'grow') {
    const add = (spec.lengthUnits * cs) / 8 + spec.oddBytes + (spec.anchorIndex % 3) * cs;
    const newSize = Math.min(layout.maxSize, Math.ceil((size + Math.max(512, add)) / 512) * 512);
    return { spec, offset: size, length: 0, newSize };
  }
  let anchor = 0;
  if (spec.anchor === 1) anchor = (spec.anchorIndex % (Math.floor(size / cs) + 1)) * cs;
  else if (spec.anchor === 2) anchor = (spec.anchorIndex % (Math.floor(size / bytesPerL2) + 1)) * bytesPerL2;
  else if (spec.anchor === 3) anchor = size;
  else if (spec.anchor === 4) anchor = (spec.anchorIndex % (Math.floor(size / layout.chunkCoverage) + 1)) * layout.chunkCoverage;
  const offset = clamp(anchor + (spec.deltaUnits * cs) / 8 + spec.oddBytes, 0, size);
  const length = clamp((spec.lengthUnits * cs) / 8 + (spec.oddBytes * 7) % 512, 0, size - offset);
  return { spec, offset, length };
}

function clamp(n: number, lo: number, hi: number): number { return Math.max(lo, Math.min(hi, n)); }

/** Keep the ops of a batch whose ranges do not overlap an earlier one; at most one grow. */
export function disjoint(ops: PlacedOp[]): PlacedOp[] {
  const kept: PlacedOp[] = [];
  for (const op of ops) {
    if (op.spec.kind === 'grow') {
      if (!kept.some((k) => k.spec.kind === 'grow')) kept.push(op);
      continue;
    }
    if (op.spec.kind === 'flush') { kept.push(op); continue; }
    const clash = kept.some((k) => k.spec.kind !== 'flush' && k.spec.kind !== 'grow'
      && op.offset < k.offset + k.length && k.offset < op.offset + op.length);
    if (!clash) kept.push(op);
  }
  return kept;
}

export interface RunStats {
  ops: number;
  reopens: number;
  bytesChecked: number;
  evictions: number;
  /** close() calls made with a batch in flight. */
  closesInFlight: number;
  /** Batches whose writes and write-zeroes overlapped. */
  overlaps: number;
  /** FAST_ZERO requests refused (the model is left unchanged by them). */
  fastZeroRefused: number;
}

export function emptyStats(): RunStats {
  return { ops: 0, reopens: 0, bytesChecked: 0, evictions: 0, closesInFlight: 0, overlaps: 0, fastZeroRefused: 0 };
}

function isCode(err: unknown, code: string): boolean {
  return err instanceof QedError && err.code === code;
}

/** A FAST_ZERO write-zeroes may be refused (before it changes anything): then it is as if it was never sent. */
function refusedFastZero(op: PlacedOp, r: PromiseSettledResult<unknown>): boolean {
  return op.spec.kind === 'zero' && op.spec.fastZero && r.status === 'rejected' && isCode(r.reason, 'FAST_ZERO');
}

/** Table-cache evictions of a QED device, to show that the tiny caches were really under pressure. */
function evictionsOf(device: BlockDevice): number {
  return device instanceof QedImage ? device.cache.stats.evictions : 0;
}

/** Build the backing chain the scenario asks for and create the overlay. */
async function buildImages(sc: Scenario, store: JitterStore, layout: Layout, size: number): Promise<DiskModel | null> {
  const memory = store.memory;
  if (sc.backing === 'none') {
    await createImage('img/top.qed', { store, size, clusterSize: layout.cs, tableSize: sc.tableSize });
    return null;
  }
  // Raw base: any length (not even a sector multiple), shorter or longer than the overlay.
  const rawLength = Math.max(1, Math.round((2 * size * sc.backingPermille) / 1000));
  const raw = memory.add('img/base.raw');
  raw.truncateSync(rawLength);
  const rawModel = new DiskModel(Math.ceil(rawLength / 512) * 512);
  for (const p of sc.backingPieces) {
    const at = Math.floor((rawLength * p.permille) / 1000);
    const bytes = pattern(Math.min(p.length, rawLength - at), p.seed);
    raw.writeSync(bytes, at);
    rawModel.write(at, bytes);
  }
  if (sc.backing !== 'qed-over-raw') {
    await createImage('img/top.qed', {
      store, size, clusterSize: layout.cs, tableSize: sc.tableSize,
      // 'raw-probed' stores no format (qemu-img create -u -b base.raw): the open probes it.
      backingFile: 'base.raw', backingFormat: sc.backing === 'raw' ? 'raw' : undefined, unsafe: sc.backing === 'raw-probed',
    });
    return rawModel;
  }
  // A middle QED layer with some data of its own, over the raw base.
  const middleSize = Math.max(512, Math.round((2 * size * sc.middlePermille) / 1000 / 512) * 512);
  await createImage('img/mid.qed', { store, size: middleSize, clusterSize: layout.cs, tableSize: sc.tableSize, backingFile: 'base.raw', backingFormat: 'raw' });
  const middleModel = DiskModel.overlay(middleSize, rawModel);
  const middle = await openDevice('img/mid.qed', { store });
  for (const w of sc.middleWrites) {
    const at = Math.floor((middleSize * w.permille) / 1000);
    const bytes = pattern(Math.min(w.length, middleSize - at), w.seed);
    await middle.write(bytes, at);
    middleModel.write(at, bytes);
  }
  await middle.close();
  await createImage('img/top.qed', { store, size, clusterSize: layout.cs, tableSize: sc.tableSize, backingFile: 'mid.qed', backingFormat: 'qed' });
  return middleModel;
}

/** checkImage on the closed file: no corruption, no leak, NEED_CHECK clear. */
export async function assertCleanOnDisk(store: JitterStore, path: string, when: string): Promise<void> {
  const file = store.memory.files.get(path)!.view(true);
  const info = await readHeader(file);
  assert.equal(info.header.features & 0x2n, 0n, `${when}: NEED_CHECK is still set after close`);
  const result = await checkImage(file, info.header);
  assert.deepEqual(
    { corruptions: result.corruptions, leaks: result.leaks, checkErrors: result.checkErrors },
    { corruptions: 0, leaks: 0, checkErrors: 0 },
    `${when}: checkImage found problems: ${result.problems.join('; ')}`,
  );
}

async function readAll(device: BlockDevice, offset: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  await device.read(buf, offset);
  return buf;
}

function assertBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (Buffer.compare(actual, expected) === 0) return;
  const at = firstDifference(actual, expected);
  if (at >= 0) {
    assert.fail(`${what}: byte ${at} reads 0x${actual[at]?.toString(16)}, the model says 0x${expected[at]?.toString(16)}`);
  }
}

/** The budget of I/O requests for one step: far above what bounded work issues. */
const STEP_BUDGET = 50_000;

export async function runScenario(sc: Scenario, stats: RunStats): Promise<void> {
  const layout = new Layout(sc.clusterShift, sc.tableSize);
  const store = new JitterStore(sc.jitterSeed);
  const size = layout.sizeFromPermille(sc.sizePermille);
  const backingModel = await buildImages(sc, store, layout, size);
  const model = DiskModel.overlay(size, backingModel);
  const backingSize = backingModel?.size ?? 0;

  const open = (cacheChoice: number) => openDevice('img/top.qed', {
    store, cacheBytes: CACHE_CHOICES[cacheChoice], idleFlushMs: sc.idleFlush ? 0 : undefined,
  });
  let device = await open(sc.cacheChoice);
  let failed = true;
  /** Guest ranges that requests changed (or could have), for the final comparison. */
  const touched: Array<[number, number]> = [];
  try {
    for (const [stepIndex, st] of sc.steps.entries()) {
      store.resetBudget(STEP_BUDGET);
      const where = `step ${stepIndex}`;
      if (st.kind === 'reopen') {
        stats.evictions += evictionsOf(device);
        await device.close();
        await assertCleanOnDisk(store, 'img/top.qed', `${where} (reopen)`);
        device = await open(st.cacheChoice);
        stats.reopens++;
        assert.equal(device.size, model.size, `${where}: size after reopen`);
        continue;
      }
      if (st.kind === 'overlap') {
        const ops = st.ops.map((o) => place(o, model.size, layout));
        stats.ops += ops.length;
        stats.overlaps++;
        for (const op of ops) if (op.spec.kind !== 'read') touched.push([op.offset, op.offset + op.length]);
        await runOverlapping(device, ops, model, where, stats);
        continue;
      }
      const ops = disjoint(st.ops.map((o) => place(o, model.size, layout)));
      stats.ops += ops.length;
      for (const op of ops) {
        if (op.spec.kind === 'grow') touched.push([op.offset, op.newSize!]);
        else if (op.spec.kind !== 'read' && op.spec.kind !== 'flush') touched.push([op.offset, op.offset + op.length]);
      }
      let results: PromiseSettledResult<Uint8Array | undefined>[];
      if (st.kind === 'closeInFlight') {
        // [L1] every request admitted before close() completes; [L3] a newcomer gets SHUTDOWN.
        const started = Promise.allSettled(ops.map((op) => execute(device, op)));
        const closing = device.close();
        const [late] = await Promise.allSettled([device.read(new Uint8Array(1), 0)]);
        if (late!.status === 'fulfilled' || !isCode(late!.reason, 'SHUTDOWN')) {
          throw new Error(`${where}: a read issued after close() began was not refused with SHUTDOWN`, { cause: late!.status === 'rejected' ? late!.reason : undefined });
        }
        results = await started;
        await closing;
        stats.closesInFlight++;
      } else {
        results = await Promise.allSettled(ops.map((op) => execute(device, op)));
      }
      // Reads were of ranges no write in the batch touched: compare with the model as it was.
      for (const [i, op] of ops.entries()) {
        const r = results[i]!;
        const what = `${where} op ${i} ${op.spec.kind} ${op.offset}+${op.length}`;
        if (op.spec.kind === 'grow') {
          const exposesBacking = backingSize > model.size;
          if (r.status === 'rejected') {
            // Refusing is allowed only where QEMU refuses: the backing file reaches past the old end.
            if (!exposesBacking) throw new Error(`${what} -> ${op.newSize}: refused: ${String(r.reason)}`, { cause: r.reason });
            continue;
          }
          continue;
        }
        if (refusedFastZero(op, r)) { stats.fastZeroRefused++; continue; }
        if (r.status === 'rejected') throw new Error(`${what} failed: ${String(r.reason)}`, { cause: r.reason });
        if (op.spec.kind === 'read') {
          assertBytes(r.value!, model.read(op.offset, op.length), what);
          stats.bytesChecked += op.length;
        }
      }
      for (const [i, op] of ops.entries()) {
        if (op.spec.kind === 'write') model.write(op.offset, pattern(op.length, op.spec.seed));
        else if (op.spec.kind === 'zero' && !refusedFastZero(op, results[i]!)) model.writeZeroes(op.offset, op.length);
        else if (op.spec.kind === 'discard') model.discard(op.offset, op.length);
        else if (op.spec.kind === 'grow' && results[i]!.status === 'fulfilled') model.grow(op.newSize!);
      }
      if (st.kind === 'closeInFlight') {
        stats.evictions += evictionsOf(device);
        await assertCleanOnDisk(store, 'img/top.qed', `${where} (close with requests in flight)`);
        device = await open(st.cacheChoice);
        stats.reopens++;
        // What the requests in flight at close() wrote must be there after the reopen.
        for (const op of ops) {
          if (op.spec.kind === 'read' || op.spec.kind === 'flush' || op.length === 0) continue;
          const [from, to] = op.spec.kind === 'grow' ? [op.offset, op.newSize!] : [op.offset, op.offset + op.length];
          if (to > from) assertBytes(await readAll(device, from, to - from), model.read(from, to - from), `${where}: ${op.spec.kind} ${from}+${to - from} after close and reopen`);
        }
      }
      // NO_HOLE: the range ends up allocated (no zero clusters, no holes), whatever it was.
      for (const [i, op] of ops.entries()) {
        if (op.spec.kind !== 'zero' || !op.spec.noHole || op.length === 0 || results[i]!.status !== 'fulfilled') continue;
        const holes = (await device.layerStatus(op.offset, op.length)).filter((e) => e.kind !== 'data');
        assert.deepEqual(holes, [], `${where} op ${i}: write-zeroes ${op.offset}+${op.length} with NO_HOLE left holes`);
      }
      assert.equal(device.size, model.size, `${where}: size`);
    }
    store.resetBudget(STEP_BUDGET);
    // The final comparison, in slices that cross cluster and table boundaries at odd places.
    const slice = 768 * 1024 + 512;
    for (const [start, end] of regionsToVerify(model, layout, touched, sc.jitterSeed)) {
      for (let at = start; at < end; at += slice) {
        store.resetBudget(STEP_BUDGET);
        const n = Math.min(slice, end - at);
        assertBytes(await readAll(device, at, n), model.read(at, n), `final read ${at}+${n}`);
        stats.bytesChecked += n;
      }
    }
    failed = false;
    stats.evictions += evictionsOf(device);
  } finally {
    store.resetBudget(Infinity);
    // After a failure, closing must not hide the first error.
    if (failed) await device.close().catch(() => undefined); else await device.close();
  }
  await assertCleanOnDisk(store, 'img/top.qed', 'at the end');
  // The middle layer was only ever opened read-only under the overlay: still clean.
  if (sc.backing === 'qed-over-raw') await assertCleanOnDisk(store, 'img/mid.qed', 'middle layer at the end');
}

/** Images up to this size are compared whole at the end. */
const FULL_COMPARE_BYTES = 4 * 1024 * 1024;

/**
 * What to read back at the end. Small images: all of it. Larger ones: every range a request
 * touched, widened by a cluster each side, the same ranges one L2 table and one table chunk
 * away (where a wrongly indexed link would put data), every range where the model holds
 * backing or written data, the first and last clusters, and some seeded random windows.
 */
export function regionsToVerify(model: DiskModel, layout: Layout, touched: Array<[number, number]>, seed: number): Array<[number, number]> {
  const size = model.size;
  if (size <= FULL_COMPARE_BYTES) return [[0, size]];
  const { cs } = layout;
  const wanted: Array<[number, number]> = [[0, cs], [size - cs, size]];
  for (const [from, to] of touched) {
    for (const shift of [0, -layout.bytesPerL2, layout.bytesPerL2, -layout.chunkCoverage, layout.chunkCoverage]) {
      wanted.push([from + shift - cs, to + shift + cs]);
    }
  }
  for (const page of model.content.pageOffsets()) wanted.push([page - cs, page + 4096 + cs]);
  let x = (seed >>> 0) || 1;
  for (let i = 0; i < 16; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const at = Math.floor((x / 2 ** 32) * size);
    wanted.push([at, at + 64 * 1024]);
  }
  const clamped = wanted.map(([a, b]): [number, number] => [Math.max(0, Math.floor(a)), Math.min(size, Math.ceil(b))]).filter(([a, b]) => a < b);
  clamped.sort((p, q) => p[0] - q[0]);
  const merged: Array<[number, number]> = [];
  for (const r of clamped) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]); else merged.push([r[0], r[1]]);
  }
  return merged;
}

async function execute(device: BlockDevice, op: PlacedOp): Promise<Uint8Array | undefined> {
  const { fua, noHole, fastZero, mayUnmap } = op.spec;
  switch (op.spec.kind) {
    case 'read': return readAll(device, op.offset, op.length);
    case 'write': await device.write(pattern(op.length, op.spec.seed), op.offset, { fua }); return undefined;
    case 'zero': await device.writeZeroes(op.offset, op.length, { mayUnmap, fua, noHole, fastZero }); return undefined;
    case 'discard': await device.discard(op.offset, op.length); return undefined;
    case 'flush': await device.flush(); return undefined;
    case 'grow': await device.resize(op.newSize!); return undefined;
  }
}

/**
 * Writes, write-zeroes and reads that overlap, all at once. The engine may order them any way
 * (and per byte: nothing promises a request is atomic), so afterwards each byte must hold the
 * value of one of the writes or zeroings covering it, or its old value where none does; a read
 * may see each byte old or as any request covering it left it. The model then takes what the
 * engine chose, which later steps and the reopens must keep.
 */
async function runOverlapping(device: BlockDevice, ops: PlacedOp[], model: DiskModel, where: string, stats: RunStats): Promise<void> {
  const lo = Math.min(...ops.map((o) => o.offset));
  const hi = Math.max(...ops.map((o) => o.offset + o.length));
  const old = model.read(lo, hi - lo);
  const results = await Promise.allSettled(ops.map((op) => execute(device, op)));
  const writers: Array<{ op: PlacedOp; bytes: Uint8Array | null }> = [];
  for (const [i, op] of ops.entries()) {
    const r = results[i]!;
    if (refusedFastZero(op, r)) { stats.fastZeroRefused++; continue; }
    if (r.status === 'rejected') throw new Error(`${where} op ${i} ${op.spec.kind} ${op.offset}+${op.length} failed: ${String(r.reason)}`, { cause: r.reason });
    if (op.spec.kind === 'write') writers.push({ op, bytes: pattern(op.length, op.spec.seed) });
    else if (op.spec.kind === 'zero') writers.push({ op, bytes: null });
  }
  const valuesAt = (at: number): number[] => {
    const values: number[] = [];
    for (const { op, bytes } of writers) if (op.offset <= at && at < op.offset + op.length) values.push(bytes ? bytes[at - op.offset]! : 0);
    return values;
  };
  const describe = (at: number, got: number, allowed: number[]) =>
    `${where}: overlapping ${ops.map((o) => `${o.spec.kind}${o.spec.noHole ? '(no hole)' : ''}${o.spec.fastZero ? '(fast)' : ''} ${o.offset}+${o.length}`).join(', ')}:`
    + ` byte ${at} is 0x${got.toString(16)}, not one of ${allowed.map((v) => `0x${v.toString(16)}`).join(', ')}`;
  for (const [i, op] of ops.entries()) {
    const r = results[i]!;
    if (op.spec.kind !== 'read' || r.status !== 'fulfilled') continue;
    const seen = r.value!;
    for (let at = op.offset; at < op.offset + op.length; at++) {
      const got: number = seen[at - op.offset]!;
      const allowed = [old[at - lo]!, ...valuesAt(at)];
      if (!allowed.includes(got)) assert.fail(`read ${describe(at, got, allowed)}`);
    }
    stats.bytesChecked += op.length;
  }
  const after = await readAll(device, lo, hi - lo);
  for (let at = lo; at < hi; at++) {
    const values = valuesAt(at);
    const allowed = values.length > 0 ? values : [old[at - lo]!];
    if (!allowed.includes(after[at - lo]!)) assert.fail(`after ${describe(at, after[at - lo]!, allowed)}`);
  }
  stats.bytesChecked += hi - lo;
  model.write(lo, after);
}
