// Hostile backing chains (reliability.md, "Hostile images / Chains"): loops, depth, names
// that lead to things that are not image files, and a raw backing file that looks like QED.
// QEMU 7.2 spins and grows to gigabytes on the loops; we refuse them at open. Also: a chain
// qed -> qed -> raw reads correctly, with relative names resolved per image directory.
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants, openSync, closeSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChainError, IoError, QedError } from '../../../src/base/errors.js';
import { MAX_CHAIN_DEPTH } from '../../../src/engine/open.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { openDevice } from '../../../src/ops/open.js';
import { ImageBuilder, rawFile } from '../../support/image-builder.js';
import '../../../src/io/node-default.js'; // local files as the default store, as the package's Node entry sets up

const CS = 4096;

/** A small QED image (4 KiB clusters, 1-cluster tables) naming `backing`. */
function qed(backing: string | null, options: { raw?: boolean; size?: number } = {}): ImageBuilder {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 1, imageSize: options.size ?? 64 * 1024 });
  if (backing !== null) b.backing(backing, options.raw ?? false);
  return b;
}

function assertChainError(pattern: RegExp) {
  return (err: unknown): true => {
    assert.ok(err instanceof ChainError, `expected ChainError, got ${String(err)}`);
    assert.equal(err.code, 'CHAIN');
    assert.match(err.message, pattern);
    return true;
  };
}

test('an image naming itself as its backing file is refused as a loop', async () => {
  const store = new MemoryStore();
  qed('self.qed').addTo(store, 'self.qed');
  await assert.rejects(openDevice('self.qed', { store }), assertChainError(/backing chain loops: self\.qed -> self\.qed/));
  await assert.rejects(openDevice('self.qed', { store, readOnly: true }), assertChainError(/loops/));
});

test('an image naming itself through another spelling of its path is refused as a loop', async () => {
  const store = new MemoryStore();
  qed('./sub/../self.qed').addTo(store, 'dir/self.qed');
  await assert.rejects(openDevice('dir/self.qed', { store }), assertChainError(/loops/));
});

test('a loop a -> b -> a is refused', async () => {
  const store = new MemoryStore();
  qed('b.qed').addTo(store, 'a.qed');
  qed('a.qed').addTo(store, 'b.qed');
  await assert.rejects(openDevice('a.qed', { store }), assertChainError(/backing chain loops: a\.qed -> b\.qed -> a\.qed/));
});

test('a loop further down the chain (a -> b -> c -> b) is refused', async () => {
  const store = new MemoryStore();
  qed('b.qed').addTo(store, 'a.qed');
  qed('c.qed').addTo(store, 'b.qed');
  qed('b.qed').addTo(store, 'c.qed');
  await assert.rejects(openDevice('a.qed', { store }), assertChainError(/loops: a\.qed -> b\.qed -> c\.qed -> b\.qed/));
});

/** img0 -> img1 -> ... -> img{backingFiles}, the last one raw. */
function chainOf(backingFiles: number): MemoryStore {
  const store = new MemoryStore();
  for (let i = 0; i < backingFiles; i++) qed(`img${i + 1}`, { raw: i === backingFiles - 1 }).addTo(store, `img${i}`);
  store.add(`img${backingFiles}`, rawFile(`img${backingFiles}`, 64 * 1024, [{ offset: 0, bytes: new Uint8Array([7]) }]));
  return store;
}

test(`a chain of ${MAX_CHAIN_DEPTH} backing files opens and reads through; one more is refused`, async () => {
  const device = await openDevice('img0', { store: chainOf(MAX_CHAIN_DEPTH), readOnly: true });
  try {
    const buf = new Uint8Array(1);
    await device.read(buf, 0);
    assert.equal(buf[0], 7, 'the raw file at the bottom shows through every layer');
  } finally {
    await device.close();
  }
  await assert.rejects(openDevice('img0', { store: chainOf(MAX_CHAIN_DEPTH + 1), readOnly: true }), assertChainError(/deeper than 64/));
});

test('a missing backing file is a chain error naming it', async () => {
  const store = new MemoryStore();
  qed('nonexist.raw', { raw: true }).addTo(store, 'a.qed');
  await assert.rejects(openDevice('a.qed', { store }), (err: unknown) => {
    assertChainError(/could not open backing file 'nonexist\.raw'/)(err);
    assert.ok((err as ChainError).cause instanceof IoError);
    return true;
  });
});

test('a raw backing file (NO_PROBE) that starts with QED magic is read as raw bytes, never probed', async () => {
  // The guest of the backing disk wrote a whole QED header into its first sector.
  const inner = new ImageBuilder({ clusterSize: CS, tableSize: 1, imageSize: 64 * 1024 }).toBytes();
  const store = new MemoryStore();
  store.add('base.raw', rawFile('base.raw', 64 * 1024, [{ offset: 0, bytes: inner }]));
  qed('base.raw', { raw: true }).addTo(store, 'raw-flag.qed');
  qed('base.raw', { raw: false }).addTo(store, 'probed.qed');

  const device = await openDevice('raw-flag.qed', { store, readOnly: true });
  try {
    assert.equal(device.backing?.format, 'raw');
    const got = new Uint8Array(2 * CS);
    await device.read(got, 0);
    assert.deepEqual(got, inner.subarray(0, 2 * CS), 'the magic and header bytes read back as data');
  } finally {
    await device.close();
  }
  // Contrast: without the flag the same file is probed, and is a QED image whose guest is zeros.
  const probed = await openDevice('probed.qed', { store, readOnly: true });
  try {
    assert.equal(probed.backing?.format, 'qed');
    const got = new Uint8Array(64);
    await probed.read(got, 0);
    assert.deepEqual(got, new Uint8Array(64));
  } finally {
    await probed.close();
  }
});

test('qed over qed over raw reads each byte from the right layer, with relative names per directory', async () => {
  // Guest clusters of 4 KiB. raw: 40000 bytes (QEMU pads it to 40448 with zeros).
  // mid (48 KiB): cluster 1 data 0xb1, cluster 3 zero, cluster 11 data 0xbb; rest from raw.
  // top (64 KiB): cluster 2 data 0xc2, cluster 5 zero; rest from mid, zeros past mid's end.
  const rawBytes = new Uint8Array(40000).map((_, i) => 1 + (i % 251));
  const store = new MemoryStore();
  store.add('b/base.raw', rawFile('b/base.raw', rawBytes.length, [{ offset: 0, bytes: rawBytes }]));
  const mid = qed('base.raw', { raw: true, size: 48 * 1024 });
  mid.mapData(1, 0xb1);
  mid.mapZero(3);
  mid.mapData(11, 0xbb);
  mid.addTo(store, 'b/mid.qed');
  const top = qed('../b/mid.qed', { size: 64 * 1024 });
  top.mapData(2, 0xc2);
  top.mapZero(5);
  top.addTo(store, 'a/top.qed');

  const expected = new Uint8Array(64 * 1024);
  for (let at = 0; at < expected.length; at++) {
    const cluster = Math.floor(at / CS);
    if (cluster === 2) expected[at] = 0xc2;
    else if (cluster === 5) expected[at] = 0;
    else if (at >= 48 * 1024) expected[at] = 0;
    else if (cluster === 1) expected[at] = 0xb1;
    else if (cluster === 3) expected[at] = 0;
    else if (cluster === 11) expected[at] = 0xbb;
    else expected[at] = at < rawBytes.length ? rawBytes[at]! : 0;
  }
  const device = await openDevice('a/top.qed', { store, readOnly: true });
  try {
    const all = new Uint8Array(expected.length);
    await device.read(all, 0);
    assert.ok(Buffer.compare(all, expected) === 0, 'whole image');
    // Unaligned reads across layer and cluster boundaries, and across the raw file's end.
    for (const [offset, length] of [[4095, 2], [39990, 20], [40440, 100], [8191, 4098], [45000, 6000], [100, 65000]] as const) {
      const part = new Uint8Array(length);
      await device.read(part, offset);
      assert.ok(Buffer.compare(part, expected.subarray(offset, offset + length)) === 0, `read ${offset}+${length}`);
    }
  } finally {
    await device.close();
  }
});

// Local files: names that lead to a directory, a FIFO or a character device.

const dir = await mkdtemp(join(tmpdir(), 'qed-chains-'));
const fifo = join(dir, 'fifo');
execFileSync('mkfifo', [fifo]);
await mkdir(join(dir, 'adir'));
after(async () => {
  // If an open is stuck on the FIFO, give it a writer so that its thread returns and the
  // process can exit; then clean up.
  try { closeSync(openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK)); } catch { /* gone */ }
  await rm(dir, { recursive: true, force: true });
});

async function overlayNaming(name: string, file: string): Promise<string> {
  const path = join(dir, file);
  await writeFile(path, qed(name, { raw: true }).toBytes());
  return path;
}

test('a backing name that is a directory is refused (EISDIR)', async () => {
  const path = await overlayNaming('adir', 'over-dir.qed');
  await assert.rejects(openDevice(path, { readOnly: true }), (err: unknown) => {
    assertChainError(/could not open backing file 'adir': .*is a directory/)(err);
    assert.equal(((err as ChainError).cause as QedError).errno, 'EISDIR');
    return true;
  });
});

test('a backing name that is a character device is refused', async () => {
  const path = await overlayNaming('/dev/null', 'over-dev.qed');
  await assert.rejects(openDevice(path, { readOnly: true }), assertChainError(/could not open backing file '\/dev\/null': .*not a regular file or block device/));
});

test('a backing name that is a FIFO is refused without blocking on it', async () => {
  // open(2) of a FIFO for reading blocks until a writer appears, holding a thread of the
  // pool; the engine must find out what the name is before it opens it (or open without
  // blocking). The guard below is not a performance limit: it only turns a hang into a
  // failure, and unblocks the stuck open so that the process can exit.
  const path = await overlayNaming('fifo', 'over-fifo.qed');
  let guard: NodeJS.Timeout | undefined;
  const blocked = new Promise<'blocked'>((resolve) => { guard = setTimeout(() => resolve('blocked'), 10_000); });
  const outcome = await Promise.race([openDevice(path, { readOnly: true }).then(
    async (device) => { await device.close(); return 'opened' as const; },
    (err: unknown) => err,
  ), blocked]);
  clearTimeout(guard);
  if (outcome === 'blocked') {
    try { closeSync(openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK)); } catch { /* ignore */ }
    assert.fail('opening a QED image whose backing name is a FIFO blocked in open(2)');
  }
  assert.notEqual(outcome, 'opened', 'a FIFO must not be accepted as a backing file');
  assertChainError(/could not open backing file 'fifo': .*not a regular file or block device/)(outcome);
});
