// Judging one mutated image: every operation a user could run on it (open, read, map,
// check, repair, write, convert) either works or fails with one of the project's typed errors
// (QedError and its subclasses); anything else (a TypeError, a RangeError from a typed array,
// an assertion) is a finding. Beyond that:
//   - after `check -r all` our checker finds no corruption, the file grew by at most one copy
//     per cluster the file holds (at least 16), and new writes read back and leave it clean;
//   - a read-write open of an image with NEED_CHECK set repairs it without growing it much,
//     and the image is clean after new writes;
//   - a dirty image reads the same opened read-only (before any repair) as after the repair
//     a read-write open runs (README, Durability);
//   - a run the map calls zero reads as zeros;
//   - a write that succeeded reads back;
//   - a successful convert gives a clean image with the same guest content.
// The repaired image goes to `qemu-img check` when the campaign samples it.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { QedError } from '../../src/base/errors.js';
import { checkImage } from '../../src/check/check.js';
import { readHeader, probeFile } from '../../src/engine/open.js';
import type { BlockDevice } from '../../src/engine/device.js';
import { chainBlockStatus } from '../../src/engine/chain-status.js';
import type { MemoryFile, MemoryStore } from '../../src/io/memory-file.js';
import { openDevice } from '../../src/ops/open.js';
import { convertImage } from '../../src/ops/convert.js';
import { rebaseImage } from '../../src/ops/rebase.js';
import { amendImage } from '../../src/ops/amend.js';
import { FUZZ_IMAGE, storeFor, type FuzzBase } from './fuzz-base-images.js';
import { applyMutations, type FuzzCase } from './fuzz-mutations.js';

/** No idle writeback timer may outlive a case: every device is closed by the judge. */
const NO_IDLE_FLUSH_MS = 1e9;
/** Map runs read per case at most: enough to walk the bases; a walk that yields more is bounded by the case's hang limit. */
const MAX_MAP_RUNS = 100_000;
const MIN_COPIES = 16;

export interface CaseOutcome {
  problems: string[];
  /** Operations that ended in a typed error (expected for hostile images). */
  refused: number;
  /** Operations that completed. */
  completed: number;
  /** The repaired image's bytes when repair succeeded (for qemu-img). */
  repaired: Uint8Array | null;
}

export class CaseJudge {
  private problems: string[] = [];
  refused = 0;
  completed = 0;

  /** Run `op`; a typed error is an acceptable refusal, anything else a finding. */
  async attempt<T>(what: string, op: () => Promise<T>): Promise<T | undefined> {
    try {
      const value = await op();
      this.completed++;
      return value;
    } catch (err) {
      if (err instanceof QedError) { this.refused++; return undefined; }
      const e = err as Error;
      this.problems.push(`${what}: untyped ${e?.name ?? typeof err}: ${e?.message ?? String(err)}${e?.stack ? ` @ ${e.stack.split('\n')[1]?.trim()}` : ''}`);
      return undefined;
    }
  }

  fail(message: string): void { this.problems.push(message); }
  get found(): string[] { return this.problems; }
}

function bytesOf(file: MemoryFile): Uint8Array {
  const out = new Uint8Array(file.sizeSync);
  file.readSync(out, 0);
  return out;
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seed * 31 + i * 7 + (i >> 9)) & 0xff;
  return out;
}

/** Guest offsets worth touching: the first and last bytes, what the base maps, and across its table boundary. */
function probeOffsets(base: FuzzBase, size: number, length: number): number[] {
  const cs = base.layout.clusterSize;
  const perTable = base.layout.tableSize * cs / 8;
  const candidates = [0, ...base.layout.guestMapped, perTable * cs - 512, size - length, 3 * cs + 512];
  return [...new Set(candidates.filter((o) => o >= 0 && o + length <= size))];
}

/** Reads at the probe offsets and the map; a run the map calls zero must read as zeros. Returns what was read (by offset). */
async function readAround(judge: CaseJudge, device: BlockDevice, base: FuzzBase, label: string): Promise<Map<number, Uint8Array>> {
  const seen = new Map<number, Uint8Array>();
  for (const at of probeOffsets(base, device.size, 4096)) {
    const buf = new Uint8Array(4096);
    if (await judge.attempt(`${label}: read at ${at}`, async () => { await device.read(buf, at); return true; })) seen.set(at, buf);
  }
  await judge.attempt(`${label}: map`, async () => {
    let runs = 0;
    const zeroRuns: Array<{ start: number; length: number }> = [];
    for await (const run of chainBlockStatus(device, 0, device.size)) {
      if (++runs > MAX_MAP_RUNS) { judge.fail(`${label}: map yields more than ${MAX_MAP_RUNS} runs for a ${device.size}-byte image`); break; }
      if (run.zero && zeroRuns.length < 16) zeroRuns.push({ start: run.start, length: run.length });
    }
    for (const run of zeroRuns) {
      const buf = new Uint8Array(Math.min(run.length, 4096));
      const ok = await judge.attempt(`${label}: read of a zero run at ${run.start}`, async () => { await device.read(buf, run.start); return true; });
      if (ok && !buf.every((b) => b === 0)) judge.fail(`${label}: map calls ${run.start}+${run.length} zero but it reads other bytes`);
    }
  });
  return seen;
}

/** Write at the probe offsets, read each back at once; returns what was written where. */
async function writeAround(judge: CaseJudge, device: BlockDevice, base: FuzzBase, label: string): Promise<Map<number, Uint8Array>> {
  const written = new Map<number, Uint8Array>();
  for (const [i, at] of probeOffsets(base, device.size, 1536).entries()) {
    const data = pattern(1536, i + 1);
    const ok = await judge.attempt(`${label}: write at ${at}`, async () => { await device.write(data, at); return true; });
    if (!ok) continue;
    written.set(at, data);
    const back = new Uint8Array(data.length);
    const read = await judge.attempt(`${label}: read back at ${at}`, async () => { await device.read(back, at); return true; });
    if (read && Buffer.compare(back, data) !== 0) judge.fail(`${label}: a write at ${at} succeeded but reads back different bytes`);
  }
  await judge.attempt(`${label}: zero write`, () => device.writeZeroes(0, Math.min(device.size, 2 * base.layout.clusterSize)));
  written.delete(0);
  return written;
}

async function checkClean(judge: CaseJudge, file: MemoryFile, label: string, allowLeaks: boolean): Promise<void> {
  await judge.attempt(`${label}: check`, async () => {
    const view = file.reopen().view(true);
    const { header } = await readHeader(view);
    const result = await checkImage(view, header);
    if (result.corruptions > 0 || result.checkErrors > 0 || (!allowLeaks && result.leaks > 0)) {
      judge.fail(`${label}: check finds ${result.corruptions} corruptions, ${result.checkErrors} check errors, ${result.leaks} leaks: ${result.problems.slice(0, 3).join('; ')}`);
    }
  });
}

/** Open read-write, write, close, check: the repaired image must take writes and stay clean. */
async function writeAndCheck(judge: CaseJudge, store: MemoryStore, file: MemoryFile, base: FuzzBase, label: string): Promise<void> {
  const device = await judge.attempt(`${label}: open read-write`, () => openDevice(FUZZ_IMAGE, { store, idleFlushMs: NO_IDLE_FLUSH_MS }));
  if (!device) return;
  try {
    await writeAround(judge, device, base, label);
    await judge.attempt(`${label}: flush`, () => device.flush());
  } finally {
    await judge.attempt(`${label}: close`, () => device.close());
  }
  await checkClean(judge, file, `${label} after writes`, true);
}

export async function judgeCase(fuzzCase: FuzzCase, bases: FuzzBase[], neighbours: Map<string, MemoryFile>): Promise<CaseOutcome> {
  const base = bases[fuzzCase.base % bases.length]!;
  const bytes = applyMutations(base, fuzzCase.mutations);
  const judge = new CaseJudge();
  const cs = base.layout.clusterSize;

  // 1. Read-only: header, open with the backing chain, reads, map, check.
  let readOnlyView: Map<number, Uint8Array> | null = null;
  {
    const { store, file } = storeFor(bytes, neighbours);
    const view = file.view(true);
    await judge.attempt('probe', () => probeFile(view));
    const info = await judge.attempt('read header', () => readHeader(view));
    if (info) await judge.attempt('check', () => checkImage(view, info.header));
    const device = await judge.attempt('open read-only', () => openDevice(FUZZ_IMAGE, { store, readOnly: true }));
    if (device) {
      try { readOnlyView = await readAround(judge, device, base, 'read-only'); } finally { await judge.attempt('close read-only', () => device.close()); }
    }
  }

  // 2. check -r all, then nothing left to repair, bounded growth, writes stay clean.
  let repaired: Uint8Array | null = null;
  {
    const { store, file } = storeFor(bytes, neighbours);
    const fixed = await judge.attempt('check -r all', async () => {
      const { header } = await readHeader(file);
      await checkImage(file, header, { fix: 'all' });
      const again = await checkImage(file, (await readHeader(file)).header);
      return again;
    });
    if (fixed) {
      // Leaks may remain: compaction moves data clusters and L2 tables, never the L1 table, so
      // space below an L1 table that a header points high into the file stays leaked (harmless).
      if (fixed.corruptions > 0 || fixed.checkErrors > 0) {
        judge.fail(`after check -r all: ${fixed.corruptions} corruptions, ${fixed.checkErrors} check errors, ${fixed.leaks} leaks remain: ${fixed.problems.slice(0, 3).join('; ')}`);
      }
      const allowed = alignedUp(bytes.length, cs) + Math.max(MIN_COPIES, Math.ceil(bytes.length / cs)) * cs;
      if (file.sizeSync > allowed) judge.fail(`check -r all grew a ${bytes.length}-byte file to ${file.sizeSync} bytes`);
      repaired = bytesOf(file);
      await writeAndCheck(judge, store, file, base, 'repaired');
    }
  }

  // 3. Read-write open of the mutated image itself (the NEED_CHECK repair runs if set).
  {
    const { store, file } = storeFor(bytes, neighbours);
    const dirty = dirtyOf(bytes);
    const device = await judge.attempt('open read-write', () => openDevice(FUZZ_IMAGE, { store, idleFlushMs: NO_IDLE_FLUSH_MS }));
    if (device) {
      if (dirty && file.sizeSync > alignedUp(bytes.length, cs) + MIN_COPIES * cs) {
        judge.fail(`the repair on open grew a ${bytes.length}-byte file to ${file.sizeSync} bytes`);
      }
      // A dirty image opened read-only reads as its repair leaves it (README, Durability).
      if (dirty && readOnlyView) {
        for (const [at, before] of readOnlyView) {
          const now = new Uint8Array(before.length);
          const read = await judge.attempt(`repaired: read at ${at}`, async () => { await device.read(now, at); return true; });
          if (read && Buffer.compare(now, before) !== 0) judge.fail(`guest bytes at ${at} read differently read-only before the repair and after it`);
        }
      }
      try {
        await writeAround(judge, device, base, 'read-write');
        await judge.attempt('read-write: flush', () => device.flush());
      } finally {
        await judge.attempt('close read-write', () => device.close());
      }
      // Only a repaired image is promised clean: one whose NEED_CHECK is clear is trusted as it is (as QEMU does).
      if (dirty) await checkClean(judge, file, 'opened dirty, repaired, written', true);
    }
  }

  // 4. convert to a new QED image: clean, and the guest content is the source's.
  {
    const { store } = storeFor(bytes, neighbours);
    const converted = await judge.attempt('convert', async () => {
      await convertImage(FUZZ_IMAGE, '/fuzz/out.qed', { store, targetFormat: 'qed', clusterSize: 4096, tableSize: 4 });
      return true;
    });
    if (converted) {
      await checkClean(judge, store.files.get('/fuzz/out.qed')!, 'converted', false);
      await compareDevices(judge, store, base);
    }
  }

  // 5. Operations that write into the mutated image: convert -n of a good image into it, a
  // growing resize, header rewrites (rebase -u, amend). Only typed errors; a dirty image is
  // repaired by the first of them and must stay clean.
  {
    const { store, file } = storeFor(bytes, neighbours);
    await judge.attempt('convert -n into it', () => convertImage('/fuzz/base.qed', FUZZ_IMAGE, { store, noCreate: true }));
    const device = await judge.attempt('open for resize', () => openDevice(FUZZ_IMAGE, { store, idleFlushMs: NO_IDLE_FLUSH_MS }));
    if (device) {
      try {
        await judge.attempt('resize', () => device.resize(device.size + 64 * cs));
      } finally {
        await judge.attempt('close after resize', () => device.close());
      }
    }
    await judge.attempt('rebase -u', () => rebaseImage(FUZZ_IMAGE, 'base.raw', { store, unsafe: true, backingFormat: 'raw' }));
    await judge.attempt('amend', () => amendImage(FUZZ_IMAGE, { store, backingFile: 'base.qed', backingFormat: 'qed' }));
    if (dirtyOf(bytes)) await checkClean(judge, file, 'written into after its repair', true);
  }
  return { problems: judge.found, refused: judge.refused, completed: judge.completed, repaired };
}

function dirtyOf(bytes: Uint8Array): boolean {
  return bytes.length >= 24 && (new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(16, true) & 2n) !== 0n;
}

async function compareDevices(judge: CaseJudge, store: MemoryStore, base: FuzzBase): Promise<void> {
  await judge.attempt('compare converted', async () => {
    const source = await openDevice(FUZZ_IMAGE, { store, readOnly: true });
    try {
      const target = await openDevice('/fuzz/out.qed', { store, readOnly: true });
      try {
        for (const at of probeOffsets(base, source.size, 4096)) {
          const a = new Uint8Array(4096);
          const b = new Uint8Array(4096);
          await source.read(a, at);
          await target.read(b, at);
          if (Buffer.compare(a, b) !== 0) judge.fail(`converted image differs from its source at ${at}`);
        }
      } finally { await target.close(); }
    } finally { await source.close(); }
  });
}

function alignedUp(n: number, to: number): number { return Math.ceil(n / to) * to; }

export interface QemuOutcome { checked: boolean; problem: string | null; refusal?: string }

/**
 * `qemu-img check` of the repaired image. Its backing file is not opened (`"backing": null`):
 * QEMU opens the backing file before it checks, and the fuzzed names lead anywhere.
 */
export function qemuAgreesClean(dir: string, repaired: Uint8Array): QemuOutcome {
  const path = join(dir, 'image.qed');
  writeFileSync(path, repaired);
  const spec = JSON.stringify({ driver: 'qed', file: { driver: 'file', filename: path }, backing: null });
  const run = spawnSync('qemu-img', ['check', '--output=json', `json:${spec}`], { encoding: 'utf8' });
  let json: Record<string, number> | null = null;
  try { json = JSON.parse(run.stdout) as Record<string, number>; } catch { json = null; }
  if (run.status === 1 && json === null) {
    // QEMU could not open it at all (its header rules differ from ours in places): not a verdict.
    return { checked: false, problem: null, refusal: run.stderr.trim().split('\n').pop() ?? '' };
  }
  const corruptions = json?.['corruptions'] ?? 0;
  if ((run.status !== 0 && run.status !== 3) || corruptions > 0) {
    return { checked: true, problem: `qemu-img check after our repair: exit ${run.status}, ${(run.stdout + run.stderr).replace(/\s+/g, ' ').slice(0, 300)}` };
  }
  return { checked: true, problem: null };
}
