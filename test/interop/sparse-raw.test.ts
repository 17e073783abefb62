// Holes in a raw file are found the way qemu-img finds them (lseek SEEK_DATA/SEEK_HOLE,
// through the native addon): `qed map` of a sparse raw file prints what `qemu-img map`
// prints, and `convert` reads only the data. Without hole finding (no addon, a store that
// cannot tell), everything is data: that fallback is tested too.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockFile, FileStore } from '../../src/io/block-file.js';
import { MemoryStore } from '../../src/io/memory-file.js';
import { NodeFile, NodeFileStore } from '../../src/io/node-file.js';
import { loadNative, type NativeLoad } from '../../src/io/native.js';
import { RawImage } from '../../src/engine/raw-image.js';
import { convertImage } from '../../src/ops/convert.js';
import { qed, qemuImg } from '../support/qemu.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function sparseRaw(dir: string, size: number, dataAt: number[]): Promise<string> {
  const path = join(dir, 'sparse.raw');
  const handle = await open(path, 'w');
  await handle.truncate(size);
  for (const at of dataAt) await handle.write(Buffer.alloc(64 * KiB, 0x5a), 0, 64 * KiB, at);
  await handle.close();
  return path;
}

async function scratch(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join('/dev/shm', 'qed-sparse-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The native addon with its lseek SEEK_DATA/SEEK_HOLE calls counted (`seeks`, which a test may reset). */
function seekCounter(): { native: NativeLoad; seeks: number } {
  const native = loadNative();
  assert.ok(native.ok && native.io.seekData, 'the addon with lseek SEEK_DATA/SEEK_HOLE');
  const seekData = native.io.seekData;
  const counter = { native: native as NativeLoad, seeks: 0 };
  counter.native = { ok: true, io: { ...native.io, seekData: (fd: number, offset: number, hole: boolean) => { counter.seeks++; return seekData(fd, offset, hole); } } };
  return counter;
}

test('map of a sparse raw file prints what qemu-img map prints, in JSON and as text', async (t) => {
  const dir = await scratch(t);
  const path = await sparseRaw(dir, 64 * MiB, [0, 5 * MiB, 5 * MiB + 64 * KiB, 63 * MiB]);
  for (const output of ['json', 'human']) {
    const ours = await qed(['map', '-f', 'raw', `--output=${output}`, path]);
    const theirs = await qemuImg(['map', '-f', 'raw', `--output=${output}`, path]);
    assert.equal(ours.code, 0, ours.stderr);
    assert.equal(ours.stdout, theirs.stdout, `--output=${output}`);
  }
});

test('a walk in steps over a file without holes scans it once, not once per step (SEEK_HOLE runs to the next hole), and a write forgets what was found', async (t) => {
  const dir = await scratch(t);
  const path = await sparseRaw(dir, 8 * MiB, []);
  const handle = await open(path, 'r+');
  await handle.write(Buffer.alloc(8 * MiB, 1), 0, 8 * MiB, 0);
  await handle.close();
  const counter = seekCounter();
  const file = await NodeFile.open(path, 'read-write', { native: counter.native, lock: false });
  try {
    for (let at = 0; at < 8 * MiB; at += MiB) assert.deepEqual(await file.findData(at, MiB), [{ offset: at, length: MiB, data: true }]);
    assert.equal(counter.seeks, 2, 'one SEEK_DATA and one SEEK_HOLE for the whole walk');
    await file.truncate(16 * MiB);
    assert.deepEqual(await file.findData(7 * MiB, 2 * MiB), [{ offset: 7 * MiB, length: MiB, data: true }, { offset: 8 * MiB, length: MiB, data: false }]);
    assert.equal(counter.seeks, 5, 'after a truncate the file is asked again (data, hole, and no data past the old end)');
  } finally {
    await file.close();
  }
});

test('findData with maxRuns stops after that many runs, and a bounded raw status asks the file for no more than it keeps', async (t) => {
  const dir = await scratch(t);
  // Data every other MiB: 64 runs of data and hole.
  const path = await sparseRaw(dir, 64 * MiB, Array.from({ length: 32 }, (_, i) => 2 * i * MiB));
  const counter = seekCounter();
  const file = await NodeFile.open(path, 'read-only', { native: counter.native, lock: false });
  try {
    // The first data run is 64 KiB, then a hole to the next MiB.
    assert.deepEqual(await file.findData(0, 64 * MiB, 3), [
      { offset: 0, length: 64 * KiB, data: true },
      { offset: 64 * KiB, length: 2 * MiB - 64 * KiB, data: false },
      { offset: 2 * MiB, length: 64 * KiB, data: true },
    ]);
    assert.ok(counter.seeks <= 4, `${counter.seeks} seeks for three runs`);
    counter.seeks = 0;
    const raw = await RawImage.open(file);
    const runs = await raw.layerStatusUpTo!(0, 64 * MiB, 5);
    assert.deepEqual(runs.map((r) => [r.kind, r.guestOffset, r.length]), [
      ['data', 0, 64 * KiB], ['zero', 64 * KiB, 2 * MiB - 64 * KiB], ['data', 2 * MiB, 64 * KiB], ['zero', 2 * MiB + 64 * KiB, 2 * MiB - 64 * KiB], ['data', 4 * MiB, 64 * KiB],
    ]);
    assert.ok(counter.seeks <= 8, `${counter.seeks} seeks for five runs of a file with 64`);
  } finally {
    await file.close();
  }
});

test('findData reports data and holes in order; a file that cannot tell reports null and raw status falls back to data', async (t) => {
  const dir = await scratch(t);
  const path = await sparseRaw(dir, 8 * MiB, [2 * MiB]);
  const file = await NodeFile.open(path, 'read-only');
  try {
    assert.deepEqual(await file.findData(0, 8 * MiB), [
      { offset: 0, length: 2 * MiB, data: false },
      { offset: 2 * MiB, length: 64 * KiB, data: true },
      { offset: 2 * MiB + 64 * KiB, length: 6 * MiB - 64 * KiB, data: false },
    ]);
    assert.deepEqual(await file.findData(2 * MiB + 4 * KiB, 8 * KiB), [{ offset: 2 * MiB + 4 * KiB, length: 8 * KiB, data: true }]);
  } finally {
    await file.close();
  }
  const memory = new MemoryStore();
  memory.add('m.raw').writeSync(new Uint8Array(MiB), 0);
  const blind: BlockFile = await memory.open('m.raw', 'read-only');
  const raw = await RawImage.open(blind);
  assert.deepEqual(await raw.layerStatus(0, MiB), [{ kind: 'data', guestOffset: 0, length: MiB, hostOffset: 0 }]);
  await raw.close();
});

test('convert of a sparse raw file reads only its data and writes what qemu-img convert writes', async (t) => {
  const dir = await scratch(t);
  const path = await sparseRaw(dir, 1024 * MiB, [0, 300 * MiB, 1023 * MiB]);
  let bytesRead = 0;
  const local = new NodeFileStore();
  const store: FileStore = {
    async open(p, mode, options) {
      const f = await local.open(p, mode, options);
      if (p !== path) return f;
      return Object.assign(Object.create(Object.getPrototypeOf(f)) as BlockFile, f, {
        read: (b: Uint8Array, o: number) => { bytesRead += b.length; return f.read(b, o); },
        findData: (o: number, l: number) => f.findData!(o, l),
        size: () => f.size(), flush: () => f.flush(), write: (b: Uint8Array, o: number) => f.write(b, o),
        truncate: (n: number) => f.truncate(n), close: () => f.close(),
      });
    },
    create: (p, o) => local.create(p, o),
    resolveBacking: (p, n) => local.resolveBacking(p, n),
    identity: (p) => local.identity(p),
  };
  await convertImage(path, join(dir, 'ours.qed'), { store, targetFormat: 'qed' });
  assert.ok(bytesRead < 16 * MiB, `convert read ${bytesRead} bytes of a 1 GiB file holding 192 KiB`);
  const compared = await qemuImg(['compare', '-f', 'raw', '-F', 'qed', path, join(dir, 'ours.qed')]);
  assert.equal(compared.code, 0, compared.stdout + compared.stderr);
  assert.equal((await qemuImg(['convert', '-f', 'raw', '-O', 'qed', path, join(dir, 'theirs.qed')])).code, 0);
  const allocated = async (p: string) => JSON.parse((await qemuImg(['check', '--output=json', p])).stdout)['allocated-clusters'];
  assert.equal(await allocated(join(dir, 'ours.qed')), await allocated(join(dir, 'theirs.qed')));
});
