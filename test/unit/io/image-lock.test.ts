// One writer per image, inside one process too: local files take QEMU's lock bytes with
// open-file-description locks, so a second open of the same file in the same process is
// refused exactly as another process would be; the memory store, asked to, keeps the same
// rules in a table. The bytes taken are checked against what QEMU 7.2 takes (/proc/locks).
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { QedError } from '../../../src/base/errors.js';
import type { BlockFile, OpenFileOptions, OpenMode } from '../../../src/io/block-file.js';
import { LockConflictError } from '../../../src/io/image-lock.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { NodeFile, NodeFileStore } from '../../../src/io/node-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';
import '../../../src/io/node-default.js'; // local files as the default store, as the package's Node entry sets up

const MiB = 2 ** 20;

async function scratchFile(t: { after(fn: () => Promise<void>): void }, name = 'disk.img'): Promise<string> {
  const dir = await mkdtemp('/dev/shm/qed-lock-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, name);
  await writeFile(path, new Uint8Array(64 * 1024).fill(7));
  return path;
}

function conflict(message: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof LockConflictError && message.test(err.message) && /Is another process using the image \[.*\]\?$/.test(err.message);
}

const WRITE_REFUSED = /^Failed to get "write" lock/;
const SHARED_WRITE_REFUSED = /^Failed to get shared "write" lock/;

/** The lock bytes /proc/locks lists for the file (device and inode: other tests' files share inode numbers on other file systems), sorted. */
async function lockedBytes(path: string): Promise<number[]> {
  const { ino, dev } = await stat(path);
  const major = ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  const bytes: number[] = [];
  for (const line of (await readFile('/proc/locks', 'utf8')).split('\n')) {
    const m = /OFDLCK\s+ADVISORY\s+READ\s+-1\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s+(\d+)\s+(\d+)/.exec(line);
    if (!m || Number(m[3]) !== ino || parseInt(m[1]!, 16) !== major || parseInt(m[2]!, 16) !== minor) continue;
    for (let b = Number(m[4]); b <= Number(m[5]); b++) bytes.push(b);
  }
  return bytes.sort((a, b) => a - b);
}

interface StoreCase { name: string; setup(t: { after(fn: () => Promise<void>): void }): Promise<{ open(mode: OpenMode, options?: OpenFileOptions): Promise<BlockFile> }> }

const STORES: StoreCase[] = [
  {
    name: 'NodeFileStore',
    async setup(t) {
      const path = await scratchFile(t);
      const store = new NodeFileStore();
      return { open: (mode, options) => store.open(path, mode, options) };
    },
  },
  {
    name: 'MemoryStore({ locking: true })',
    async setup() {
      const store = new MemoryStore({ locking: true });
      store.add('disk.img').writeSync(new Uint8Array(4096), 0);
      return { open: (mode, options) => store.open('disk.img', mode, options) };
    },
  },
];

for (const { name, setup } of STORES) {
  test(`${name}: a second read-write open of a file is refused while the first is open, and allowed after it closed`, async (t) => {
    const s = await setup(t);
    const first = await s.open('read-write');
    await assert.rejects(s.open('read-write'), conflict(WRITE_REFUSED));
    await first.close();
    await (await s.open('read-write')).close();
  });

  test(`${name}: a reader is refused under a writer, and a writer under a reader, with QEMU's two messages`, async (t) => {
    const s = await setup(t);
    const writer = await s.open('read-write');
    await assert.rejects(s.open('read-only'), conflict(SHARED_WRITE_REFUSED));
    await writer.close();
    const reader = await s.open('read-only');
    await assert.rejects(s.open('read-write'), conflict(WRITE_REFUSED));
    await reader.close();
  });

  test(`${name}: readers share with readers, and force-share reads alongside a writer`, async (t) => {
    const s = await setup(t);
    const a = await s.open('read-only');
    const b = await s.open('read-only');
    await a.close();
    await b.close();
    const writer = await s.open('read-write');
    const peek = await s.open('read-only', { forceShare: true });
    await peek.close();
    await writer.close();
  });

  test(`${name}: a refused open leaves no lock behind`, async (t) => {
    const s = await setup(t);
    const writer = await s.open('read-write');
    await assert.rejects(s.open('read-only'), LockConflictError);
    await writer.close();
    // Had the refused reader kept its "refuse write" byte, this writer would be refused.
    await (await s.open('read-write')).close();
  });

  test(`${name}: lock: false neither takes nor respects locks; force-share with read-write is a usage error`, async (t) => {
    const s = await setup(t);
    const writer = await s.open('read-write');
    const unlocked = await s.open('read-write', { lock: false });
    await unlocked.close();
    await writer.close();
    await assert.rejects(s.open('read-write', { forceShare: true }), (err: unknown) => err instanceof QedError && err.code === 'USAGE');
  });
}

test('the bytes locked are the ones QEMU 7.2 locks on a QED image: 100,201,203 read-only; 100 with -U; 100,101,103,201,203 read-write', async (t) => {
  const path = await scratchFile(t);
  for (const [mode, options, expected] of [
    ['read-only', {}, [100, 201, 203]],
    ['read-only', { forceShare: true }, [100]],
    ['read-write', {}, [100, 101, 103, 201, 203]],
  ] as const) {
    const file = await NodeFile.open(path, mode, options);
    assert.deepEqual(await lockedBytes(path), expected, `${mode} ${JSON.stringify(options)}`);
    await file.close();
    assert.deepEqual(await lockedBytes(path), [], 'closing drops every lock');
  }
});

test('creating a file that is open elsewhere is refused and leaves its content alone', async (t) => {
  const path = await scratchFile(t);
  const reader = await NodeFile.open(path, 'read-only');
  await assert.rejects(NodeFile.create(path), conflict(WRITE_REFUSED));
  assert.equal((await stat(path)).size, 64 * 1024, 'not truncated');
  await reader.close();
  const created = await NodeFile.create(path);
  assert.equal(await created.size(), 0);
  await created.close();
});

test('two openDevice read-write opens of one image in one process: the second is refused', async (t) => {
  const dir = await mkdtemp('/dev/shm/qed-lock-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'disk.qed');
  await createImage(path, { size: MiB });
  const first = await openDevice(path);
  await assert.rejects(openDevice(path), conflict(WRITE_REFUSED));
  await first.write(new Uint8Array(4096).fill(1), 0);
  await first.close();
});

test('a backing file is held read-only: it cannot be opened for writing while an overlay over it is open', async (t) => {
  const dir = await mkdtemp('/dev/shm/qed-lock-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  await createImage(join(dir, 'base.qed'), { size: MiB });
  await createImage(join(dir, 'top.qed'), { backingFile: 'base.qed', backingFormat: 'qed' });
  const top = await openDevice(join(dir, 'top.qed'));
  await assert.rejects(openDevice(join(dir, 'base.qed')), conflict(WRITE_REFUSED));
  const reader = await openDevice(join(dir, 'base.qed'), { readOnly: true });
  await reader.close();
  await top.close();
});

test('without the native addon a read-write open is refused, saying why and how to go on; a read-only open proceeds', async (t) => {
  const path = await scratchFile(t);
  const native = { ok: false as const, reason: 'Cannot find module qed_native.node' };
  await assert.rejects(NodeFile.open(path, 'read-write', { native }), (err: unknown) =>
    err instanceof QedError && err.code === 'UNSUPPORTED'
    && /^not supported: image locking needs the native addon qed-image was built with; pass lock: false \/ --no-lock to open without locking/.test(err.message)
    && err.message.includes('qed_native.node'));
  await assert.rejects(NodeFile.create(path, { native }), (err: unknown) => err instanceof QedError && err.code === 'UNSUPPORTED');
  await (await NodeFile.open(path, 'read-only', { native })).close();
  await (await NodeFile.open(path, 'read-write', { native, lock: false })).close();
});
