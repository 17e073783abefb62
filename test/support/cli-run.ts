// Support for the CLI tests (test/cli): running `qed` and QEMU's tools side by side on the
// same files, scratch directories under /dev/shm, byte patches for hand-made corruption, and
// an independent reader of QED tables (written from the format description with DataView,
// not with src/format) so a test can find the entry it is about to break.
//
// QEMU is the oracle: these helpers capture what each tool printed and its exit code, and
// leave every judgement to the test.
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { QED_CLI, commandArgs, describeRun, run as runProgram, succeed, type RunResult } from './qemu.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;

// ---- processes -----------------------------------------------------------------------------

/** What a run printed and its exit status (-1 when killed by a signal). */
export type Ran = RunResult;
export { QED_CLI, describeRun };

/** Run without a shell; a non-zero exit is a result, not an exception. stdout is a pipe. */
export function run(program: string, args: readonly string[], cwd?: string): Promise<Ran> {
  return runProgram(program, args, { cwd });
}

export const qed = (args: readonly string[], cwd?: string): Promise<Ran> => run(process.execPath, [QED_CLI, ...args], cwd);
export const qemuImg = (args: readonly string[], cwd?: string): Promise<Ran> => run('qemu-img', args, cwd);
export const qemuIo = (args: readonly string[], cwd?: string): Promise<Ran> => run('qemu-io', args, cwd);

/** The run must exit 0. */
export const ok = succeed;

/** qemu-io -c pairs. */
export const ioArgs = commandArgs;

/** Write with qemu-io (QEMU lays out the clusters, so fixtures do not depend on our engine). */
export async function qemuWrite(dir: string, image: string, commands: readonly string[], format = 'qed'): Promise<void> {
  await ok(`qemu-io ${commands.join('; ')}`, qemuIo(['-f', format, ...ioArgs(commands), image], dir));
}

// ---- scratch space -------------------------------------------------------------------------

/** A fresh directory under /dev/shm, removed when the test ends. */
export async function scratch(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join('/dev/shm', 'qed-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

// ---- files -----------------------------------------------------------------------------------

export async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size;
}

/** Bytes the file system allocated (st_blocks * 512), as qemu-img info's actual-size. */
export async function allocatedSize(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

export async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

/** Overwrite a little-endian u64 in place. */
export async function patchU64(path: string, offset: number, value: number | bigint): Promise<void> {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64LE(BigInt(value));
  const handle = await open(path, 'r+');
  try { await handle.write(bytes, 0, 8, offset); } finally { await handle.close(); }
}

export async function patchBytes(path: string, offset: number, bytes: Uint8Array): Promise<void> {
  const handle = await open(path, 'r+');
  try { await handle.write(bytes, 0, bytes.length, offset); } finally { await handle.close(); }
}

export async function appendBytes(path: string, bytes: Uint8Array): Promise<void> {
  await writeFile(path, bytes, { flag: 'a' });
}

export async function truncateFile(path: string, length: number): Promise<void> {
  await truncate(path, length);
}

/** A raw file of `bytes` followed by zeros (a hole) up to `size`. */
export async function writeRaw(path: string, bytes: Uint8Array, size = bytes.length): Promise<void> {
  await writeFile(path, bytes);
  if (size > bytes.length) await truncate(path, size);
}

/** Deterministic non-zero bytes (no zero byte, so zero detection never skips any of it). */
export function noise(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = 1 + (s % 255);
  }
  return out;
}

/** What the guest sees, through qemu-img convert -O raw (the oracle's reader). */
export async function guestBytes(dir: string, image: string): Promise<Buffer> {
  const out = join(dir, `.guest-${Math.random().toString(36).slice(2)}.raw`);
  await ok(`qemu-img convert ${image}`, qemuImg(['convert', '-O', 'raw', image, out], dir));
  try { return await readFile(out); } finally { await rm(out, { force: true }); }
}

// ---- QEMU's verdicts ----------------------------------------------------------------------------

export interface CheckJson {
  'total-clusters'?: number;
  corruptions?: number;
  'corruptions-fixed'?: number;
  'check-errors'?: number;
  leaks?: number;
  'leaks-fixed'?: number;
  'allocated-clusters'?: number;
  filename?: string;
  format?: string;
  'fragmented-clusters'?: number;
  'image-end-offset'?: number;
}

export function parseJson<T = unknown>(what: string, r: Ran): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`${what}: stdout is not JSON\n${describeRun(what, r)}`);
  }
}

/** qemu-img check --output=json: exit code and report. */
export async function qemuCheck(dir: string, image: string, extra: readonly string[] = []): Promise<{ code: number; report: CheckJson; ran: Ran }> {
  const ran = await qemuImg(['check', ...extra, '--output=json', image], dir);
  return { code: ran.code, report: parseJson<CheckJson>('qemu-img check', ran), ran };
}

/** qemu-img check must call the image clean (exit 0, no corruption, no leak). */
export async function assertQemuClean(dir: string, image: string): Promise<void> {
  const { code, report, ran } = await qemuCheck(dir, image);
  if (code !== 0 || report.corruptions || report.leaks || report['check-errors']) {
    throw new Error(`qemu-img check does not call ${image} clean\n${describeRun('qemu-img check', ran)}`);
  }
}

/** qemu-img compare must call the two identical (exit 0). */
export async function assertSameGuest(dir: string, a: string, b: string, extra: readonly string[] = []): Promise<void> {
  const r = await qemuImg(['compare', ...extra, a, b], dir);
  if (r.code !== 0) throw new Error(`qemu-img compare ${a} ${b}\n${describeRun('qemu-img compare', r)}`);
}

export interface MapEntry { start: number; length: number; depth: number; present: boolean; zero: boolean; data: boolean; offset?: number }

export async function qemuMap(dir: string, image: string): Promise<MapEntry[]> {
  return parseJson<MapEntry[]>('qemu-img map', await ok('qemu-img map', qemuImg(['map', '--output=json', image], dir)));
}

/**
 * A map without host offsets, adjacent runs merged again: what is allocated where in the guest,
 * which two writers agree on even when they placed clusters differently in the file.
 */
export function mapShape(entries: readonly MapEntry[]): Array<{ start: number; length: number; depth: number; present: boolean; zero: boolean; data: boolean }> {
  const out: Array<{ start: number; length: number; depth: number; present: boolean; zero: boolean; data: boolean }> = [];
  for (const e of entries) {
    const prev = out[out.length - 1];
    if (prev && prev.start + prev.length === e.start && prev.depth === e.depth && prev.present === e.present && prev.zero === e.zero && prev.data === e.data) {
      prev.length += e.length;
    } else {
      out.push({ start: e.start, length: e.length, depth: e.depth, present: e.present, zero: e.zero, data: e.data });
    }
  }
  return out;
}

// ---- an independent reader of QED tables ----------------------------------------------------------

export interface QedLayout {
  clusterSize: number;
  tableSize: number;
  headerSize: number;
  features: bigint;
  l1Offset: number;
  imageSize: number;
  entriesPerTable: number;
  /** L1 entries (0 = no table). */
  l1: number[];
}

/** Header fields and the L1 table, read with DataView from the format description. */
export async function readLayout(path: string): Promise<QedLayout> {
  const bytes = await readFile(path);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const clusterSize = v.getUint32(4, true);
  const tableSize = v.getUint32(8, true);
  const l1Offset = Number(v.getBigUint64(40, true));
  const entriesPerTable = (tableSize * clusterSize) / 8;
  const l1: number[] = [];
  for (let i = 0; i < entriesPerTable; i++) l1.push(Number(v.getBigUint64(l1Offset + 8 * i, true)));
  return {
    clusterSize, tableSize, headerSize: v.getUint32(12, true), features: v.getBigUint64(16, true),
    l1Offset, imageSize: Number(v.getBigUint64(48, true)), entriesPerTable, l1,
  };
}

/** The L2 entries of the table at `tableOffset`. */
export async function readL2(path: string, layout: QedLayout, tableOffset: number): Promise<number[]> {
  const bytes = await readFile(path);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let i = 0; i < layout.entriesPerTable; i++) out.push(Number(v.getBigUint64(tableOffset + 8 * i, true)));
  return out;
}

/** Where the L2 entry for a guest offset lives in the file, and what it holds. */
export async function l2EntryFor(path: string, guestOffset: number): Promise<{ entryOffset: number; value: number; tableOffset: number }> {
  const layout = await readLayout(path);
  const span = layout.entriesPerTable * layout.clusterSize;
  const tableOffset = layout.l1[Math.floor(guestOffset / span)]!;
  if (!tableOffset) throw new Error(`no L2 table for guest offset ${guestOffset} in ${path}`);
  const index = Math.floor((guestOffset % span) / layout.clusterSize);
  const entries = await readL2(path, layout, tableOffset);
  return { entryOffset: tableOffset + 8 * index, value: entries[index]!, tableOffset };
}

/** The feature bits stored in the header. */
export async function featuresOf(path: string): Promise<bigint> {
  return (await readLayout(path)).features;
}
