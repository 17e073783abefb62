// Every function the package root exports, used only through the package root, as an npm
// user would. Images are checked by QEMU's tools where they are written.
import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile, stat, writeFile } from 'node:fs/promises';
import {
  AbortError, ChainError, FormatError, IoError, MemoryStore, OutOfRangeError, QedError, ReadOnlyError, UsageError,
  amend, check, commit, compare, convert, createImage, info, map, measure, openImage, rebase, resize,
  type ChainExtent,
} from '../../src/index.js';
import { qemuImg, scratchDir, succeed } from '../support/qemu.js';

const MiB = 1024 * 1024;

async function qemuChecks(path: string): Promise<void> {
  await succeed(`qemu-img check ${path}`, qemuImg(['check', path]));
}

test('createImage makes an image QEMU checks clean; exclusive refuses an existing file and names it', async (t) => {
  const dir = await scratchDir(t);
  const path = join(dir, 'a.qed');
  const made = await createImage(path, { size: 64 * MiB, exclusive: true });
  assert.deepEqual(made, { path, format: 'qed', size: 64 * MiB, backingFormat: undefined });
  await qemuChecks(path);
  await assert.rejects(createImage(path, { size: MiB, exclusive: true }), (err: unknown) =>
    err instanceof IoError && err.errno === 'EEXIST' && err.path === path);
  assert.equal((await stat(path)).size > 0, true, 'the existing image is untouched');
  await assert.rejects(createImage(join(dir, 'b.qed'), { size: 1000 * MiB, clusterSize: 3 }), (err: unknown) =>
    err instanceof QedError && err.path === join(dir, 'b.qed'), 'a refused geometry names the file');
});

test('openImage: await using closes, describe() tells the layout, for await walks merged block status through the chain', async (t) => {
  const dir = await scratchDir(t);
  const base = join(dir, 'base.qed');
  const top = join(dir, 'top.qed');
  await createImage(base, { size: 8 * MiB });
  await createImage(top, { backingFile: 'base.qed' });
  {
    await using disk = await openImage(base);
    await disk.write(Buffer.alloc(MiB, 1), 0);
  }
  let kept: Awaited<ReturnType<typeof openImage>>;
  {
    await using disk = await openImage(top);
    kept = disk;
    await disk.write(Buffer.alloc(MiB, 2), 4 * MiB);
    assert.deepEqual(disk.describe(), {
      path: top, format: 'qed', size: 8 * MiB, readOnly: false, clusterSize: 65536, tableSize: 4,
      backingFile: 'base.qed', backingFormat: 'qed', chainDepth: 1,
    });
    const runs: ChainExtent[] = [];
    for await (const run of disk.blockStatus()) runs.push(run);
    assert.deepEqual(runs.map((r) => [r.start, r.length, r.depth, r.data]), [
      [0, MiB, 1, true], [MiB, 3 * MiB, 1, false], [4 * MiB, MiB, 0, true], [5 * MiB, 3 * MiB, 1, false],
    ]);
  }
  await assert.rejects(kept.read(Buffer.alloc(512), 0), (err: unknown) => err instanceof QedError && err.code === 'CLOSED');
  await qemuChecks(top);
});

test('arguments are checked at the boundary: every failure is a QedError, never a TypeError', async (t) => {
  const dir = await scratchDir(t);
  const path = join(dir, 'a.qed');
  await createImage(path, { size: MiB });
  const cases: Array<[string, () => Promise<unknown>]> = [
    ['a number as path', () => openImage(42 as unknown as string)],
    ['cacheBytes NaN', () => openImage(path, { cacheBytes: NaN })],
    ['an unknown format', () => openImage(path, { format: 'qcow2' as 'qed' })],
    ['a string as options', () => openImage(path, 'r' as unknown as object)],
    ['a bad backing policy', () => openImage(path, { backingPolicy: { follow: 'under' } as never })],
    ['a negative size', () => createImage(join(dir, 'n.qed'), { size: -1 })],
    ['check with a bad repair mode', () => check(path, { repair: 'everything' as 'all' })],
    ['convert without a target', () => convert(path, undefined as unknown as string)],
    ['resize to NaN', () => resize(path, NaN)],
    ['a signal that is not one', () => convert(path, join(dir, 'x.raw'), { signal: {} as AbortSignal })],
  ];
  for (const [what, call] of cases) {
    await assert.rejects(call(), (err: unknown) => err instanceof UsageError && err.code === 'USAGE', what);
  }
  const disk = await openImage(path);
  await assert.rejects(disk.read([1, 2, 3] as unknown as Uint8Array, 0), UsageError, 'a plain array as buffer');
  await assert.rejects(disk.read(Buffer.alloc(512), MiB), (err: unknown) =>
    err instanceof OutOfRangeError && err.guestOffset === MiB && err.path === path);
  await disk.close();
  const readOnly = await openImage(path, { readOnly: true });
  await assert.rejects(readOnly.write(Buffer.alloc(512), 0), ReadOnlyError);
  await readOnly.close();
});

test('errors carry the OS errno at the top, and a backing policy refuses with ChainError', async (t) => {
  const dir = await scratchDir(t);
  const top = join(dir, 'top.qed');
  await createImage(top, { size: MiB, backingFile: 'missing.qed', unsafe: true });
  await assert.rejects(openImage(top, { readOnly: true }), (err: unknown) => err instanceof ChainError && err.errno === 'ENOENT' && err.path === top);
  await createImage(join(dir, 'base.raw'), { format: 'raw', size: MiB });
  await amend(top, { backingFile: 'base.raw', backingFormat: 'raw' });
  await assert.rejects(openImage(top, { readOnly: true, backingPolicy: { follow: 'none' } }), ChainError);
  await (await openImage(top, { readOnly: true, backingPolicy: { follow: 'under', root: dir } })).close();
  await writeFile(join(dir, 'junk.qed'), Buffer.concat([Buffer.from('QED\0'), Buffer.alloc(4092)]));
  await assert.rejects(openImage(join(dir, 'junk.qed'), { readOnly: true }), (err: unknown) => err instanceof FormatError && err.path === join(dir, 'junk.qed'));
});

test('convert reports progress, stops on abort with AbortError, and its output matches qemu-img convert', async (t) => {
  const dir = await scratchDir(t);
  const src = join(dir, 'src.qed');
  await createImage(src, { size: 64 * MiB });
  {
    await using disk = await openImage(src);
    for (let i = 0; i < 64; i += 3) await disk.write(Buffer.alloc(MiB, i + 1), i * MiB);
  }
  const seen: number[] = [];
  await convert(src, join(dir, 'ours.raw'), { onProgress: (done, total) => { assert.equal(total, 64 * MiB); seen.push(done); } });
  assert.equal(seen.at(-1), 64 * MiB, 'progress ends at the total');
  assert.ok(seen.every((d, i) => i === 0 || d >= seen[i - 1]!), 'progress never goes back');
  await succeed('qemu-img convert', qemuImg(['convert', '-O', 'raw', src, join(dir, 'theirs.raw')]));
  assert.ok((await readFile(join(dir, 'ours.raw'))).equals(await readFile(join(dir, 'theirs.raw'))));

  const controller = new AbortController();
  await assert.rejects(convert(src, join(dir, 'cut.qed'), {
    targetFormat: 'qed', inFlight: 1, onProgress: (done) => { if (done >= 8 * MiB) controller.abort(new Error('enough')); }, signal: controller.signal,
  }), (err: unknown) => err instanceof AbortError && err.code === 'ABORTED' && (err.cause as Error).message === 'enough');
  await qemuChecks(join(dir, 'cut.qed'));
  await assert.rejects(convert(src, join(dir, 'never.raw'), { signal: AbortSignal.abort() }), AbortError);
});

test('check, info, map, compare, measure and resize answer as qemu-img does', async (t) => {
  const dir = await scratchDir(t);
  const a = join(dir, 'a.qed');
  await createImage(a, { size: 16 * MiB });
  {
    await using disk = await openImage(a);
    await disk.write(Buffer.alloc(2 * MiB, 7), 2 * MiB);
  }
  const report = await check(a);
  assert.equal(report.exitCode, 0);
  assert.equal(report.allocatedClusters, 32);
  const progress: number[] = [];
  await check(a, { repair: 'all', onProgress: (d) => progress.push(d) });
  assert.ok(progress.length > 0 && progress.at(-1) === 16 * MiB, 'check reports progress to the end');

  const [described] = await info(a);
  assert.equal(described!['virtual-size'], 16 * MiB);
  assert.equal(described!['cluster-size'], 65536);
  const theirs = JSON.parse((await succeed('qemu-img info', qemuImg(['info', '--output=json', a]))).stdout) as Record<string, unknown>;
  assert.equal(theirs['virtual-size'], described!['virtual-size']);

  const runs: ChainExtent[] = [];
  for await (const run of map(a)) runs.push(run);
  const qemuMap = JSON.parse((await succeed('qemu-img map', qemuImg(['map', '--output=json', a]))).stdout) as Array<Record<string, unknown>>;
  assert.deepEqual(runs.map((r) => [r.start, r.length, r.data, r.zero, r.hostOffset]), qemuMap.map((e) => [e.start, e.length, e.data, e.zero, e.offset]));

  await convert(a, join(dir, 'a.raw'));
  assert.deepEqual(await compare(a, join(dir, 'a.raw')), { kind: 'identical', sizeMismatch: false, identical: true, exitCode: 0 });
  {
    await using disk = await openImage(join(dir, 'a.raw'));
    await disk.write(Buffer.alloc(512, 9), 3 * MiB);
  }
  const different = await compare(a, join(dir, 'a.raw'));
  assert.equal(different.exitCode, 1);
  assert.equal(different.kind === 'content-mismatch' ? different.offset : -1, 3 * MiB);

  const measured = await measure({ source: a, targetFormat: 'qed' });
  assert.equal(measured.required > 2 * MiB, true);
  assert.equal(await resize(a, 32 * MiB), 32 * MiB);
  assert.equal((await info(a))[0]!['virtual-size'], 32 * MiB);
  await qemuChecks(a);
});

test('commit and rebase move data between layers with progress, and the result reads the same through QEMU', async (t) => {
  const dir = await scratchDir(t);
  const base = join(dir, 'base.qed');
  const top = join(dir, 'top.qed');
  await createImage(base, { size: 8 * MiB });
  await createImage(top, { backingFile: 'base.qed', backingFormat: 'qed' });
  {
    await using disk = await openImage(top);
    await disk.write(Buffer.alloc(MiB, 5), MiB);
  }
  await convert(top, join(dir, 'before.raw'));
  let commits = 0;
  await commit(top, { onProgress: () => { commits++; } });
  assert.ok(commits > 0);
  const afterCommit = await compare(base, join(dir, 'before.raw'));
  assert.equal(afterCommit.identical, true, 'the base holds the overlay data');

  await rebase(top, '', { onProgress: () => undefined });
  assert.equal((await info(top))[0]!['backing-filename'], undefined);
  assert.equal((await compare(top, join(dir, 'before.raw'))).identical, true, 'flattening keeps the content');
  await succeed('qemu-img compare', qemuImg(['compare', top, join(dir, 'before.raw')]));
  await qemuChecks(top);
  await qemuChecks(base);
});

test('a MemoryStore works through the same calls (the portable seam)', async () => {
  const store = new MemoryStore();
  await createImage('mem.qed', { size: 4 * MiB, store });
  {
    await using disk = await openImage('mem.qed', { store });
    await disk.write(Buffer.alloc(4096, 3), 8192);
  }
  await convert('mem.qed', 'mem.raw', { store });
  const buf = Buffer.alloc(4096);
  const raw = await openImage('mem.raw', { store, readOnly: true });
  await raw.read(buf, 8192);
  await raw.close();
  assert.ok(buf.equals(Buffer.alloc(4096, 3)));
  assert.equal((await check('mem.qed', { store })).exitCode, 0);
});
