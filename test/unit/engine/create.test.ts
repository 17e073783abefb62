// Creating images: byte for byte the header QEMU 7.2 writes (hexdumps from NOTES.md §1),
// the same file size (header cluster + L1 table), and the same refusals, before any file is
// touched. Where QEMU creates images it cannot open (table_size 1), ours open and work.
import test from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../../src/base/errors.js';
import { checkImage } from '../../../src/check/check.js';
import { createQed, planQedHeader, type CreateQedOptions } from '../../../src/engine/create.js';
import { readHeader } from '../../../src/engine/open.js';
import { MemoryFile, MemoryStore } from '../../../src/io/memory-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';

/** Bytes from `xxd` lines ("00000000: 5145 4400 ...  QED....."). */
function xxd(lines: string): Uint8Array {
  const out: number[] = [];
  for (const line of lines.trim().split('\n')) {
    const hex = line.split(':')[1]!.trim().split(/\s{2,}/)[0]!.replace(/\s/g, '');
    for (let i = 0; i < hex.length; i += 2) out.push(parseInt(hex.slice(i, i + 2), 16));
  }
  return Uint8Array.from(out);
}

async function created(options: CreateQedOptions): Promise<MemoryFile> {
  const file = new MemoryFile('new.qed');
  await createQed(file, options);
  return file;
}

function head(file: MemoryFile, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  file.readSync(buf, 0);
  return buf;
}

const GiB = 2 ** 30;

test('qemu-img create -f qed a.qed 1G: the same 128 header bytes and a 327680-byte file', async () => {
  const file = await created({ size: GiB });
  const expected = new Uint8Array(128);
  expected.set(xxd(`
00000000: 5145 4400 0000 0100 0400 0000 0100 0000  QED.............
00000010: 0000 0000 0000 0000 0000 0000 0000 0000  ................
00000020: 0000 0000 0000 0000 0000 0100 0000 0000  ................
00000030: 0000 0040 0000 0000 0000 0000 0000 0000  ...@............`));
  assert.deepEqual(head(file, 128), expected);
  assert.equal(file.sizeSync, 327680);
  const l1 = new Uint8Array(4 * 65536);
  file.readSync(l1, 65536);
  assert.deepEqual(l1, new Uint8Array(4 * 65536), 'the L1 table is zeros');
});

test('-o cluster_size=4096,table_size=1 and table_size=16: the fields and file sizes QEMU writes', async () => {
  const one = await created({ size: GiB, clusterSize: 4096, tableSize: 1 });
  assert.deepEqual(head(one, 16).subarray(4, 16), Uint8Array.from([0x00, 0x10, 0, 0, 0x01, 0, 0, 0, 0x01, 0, 0, 0]));
  assert.deepEqual(head(one, 48).subarray(0x28, 0x30), Uint8Array.from([0x00, 0x10, 0, 0, 0, 0, 0, 0]), 'l1_table_offset 0x1000');
  assert.equal(one.sizeSync, 8192);
  const sixteen = await created({ size: GiB, clusterSize: 4096, tableSize: 16 });
  assert.deepEqual(head(sixteen, 12).subarray(8, 12), Uint8Array.from([0x10, 0, 0, 0]));
  assert.equal(sixteen.sizeSync, 69632);
});

test('-b base.raw -F raw: features 0x5, the name stored right after the 64 bytes, no NUL', async () => {
  const store = new MemoryStore();
  store.add('base.raw').truncateSync(GiB);
  await createImage('c.qed', { store, size: GiB, backingFile: 'base.raw', backingFormat: 'raw' });
  const file = store.files.get('c.qed')!;
  const expected = new Uint8Array(128);
  expected.set(xxd(`
00000000: 5145 4400 0000 0100 0400 0000 0100 0000  QED.............
00000010: 0500 0000 0000 0000 0000 0000 0000 0000  ................
00000020: 0000 0000 0000 0000 0000 0100 0000 0000  ................
00000030: 0000 0040 0000 0000 4000 0000 0800 0000  ...@....@.......
00000040: 6261 7365 2e72 6177 0000 0000 0000 0000  base.raw........`));
  assert.deepEqual(head(file, 128), expected);
  assert.equal(file.sizeSync, 327680);
});

test('-b <qed> -F qed: only the backing-file bit (0x1); the format is not stored; the name is verbatim', async () => {
  const name = '/tmp/qedresearch/s1/base.qed';
  const file = await created({ size: GiB, backingFile: name, backingFormat: 'qed' });
  const { header, backingName, backingFormat } = await readHeader(file);
  assert.equal(header.features, 0x1n);
  assert.equal(header.backingFilenameOffset, 64);
  assert.equal(header.backingFilenameSize, 28);
  assert.equal(backingName, name);
  assert.equal(backingFormat, null, 'probed at open');
});

test('a size that is not a cluster multiple is stored as is (1000448)', async () => {
  const file = await created({ size: 1000448 });
  assert.equal((await readHeader(file)).header.imageSize, 1000448);
  assert.equal(file.sizeSync, 327680);
});

test('the largest size is accepted and one sector more is refused (64T for 64k/4, 1G for 4k/1); size 0 is accepted', async () => {
  assert.equal(planQedHeader({ size: 64 * 2 ** 40 }).header.imageSize, 64 * 2 ** 40);
  assert.throws(() => planQedHeader({ size: 64 * 2 ** 40 + 512 }), refusal('size', /too large for cluster_size 65536 and table_size 4/));
  assert.equal(planQedHeader({ size: GiB, clusterSize: 4096, tableSize: 1 }).header.imageSize, GiB);
  assert.throws(() => planQedHeader({ size: GiB + 512, clusterSize: 4096, tableSize: 1 }), refusal('size', /at most 1073741824/));
  assert.equal(planQedHeader({ size: 0 }).header.imageSize, 0);
});

function refusal(field: string, message: RegExp) {
  return (err: unknown): true => {
    assert.ok(err instanceof UsageError, String(err));
    assert.equal(err.code, 'USAGE');
    assert.equal(err.field, field);
    assert.match(err.message, message);
    return true;
  };
}

test('bad cluster sizes, table sizes and image sizes are refused naming the option', () => {
  for (const clusterSize of [1000, 2048, 3 * 4096, 128 * 2 ** 20, 0, -4096]) {
    assert.throws(() => planQedHeader({ size: GiB, clusterSize }), refusal('cluster_size', new RegExp(`cluster_size ${clusterSize} is invalid`)));
  }
  for (const tableSize of [0, 3, 32, 1.5]) {
    assert.throws(() => planQedHeader({ size: GiB, tableSize }), refusal('table_size', new RegExp(`table_size ${tableSize} is invalid`)));
  }
  for (const size of [1000, -512, 0.5, Number.MAX_SAFE_INTEGER + 1]) {
    assert.throws(() => planQedHeader({ size }), refusal('size', /image size .* is invalid/));
  }
});

test('a backing name longer than the header cluster can hold (or than QEMU reads) is refused, not written over the L1 table', () => {
  // QEMU writes a 70000-byte name over the L1 area and makes an image it cannot open.
  assert.throws(() => planQedHeader({ size: GiB, clusterSize: 4096, backingFile: 'x'.repeat(4096 - 64 + 1) }), refusal('backing_file', /at most 4032 fit/));
  assert.throws(() => planQedHeader({ size: GiB, backingFile: 'x'.repeat(4096) }), refusal('backing_file', /at most 4095 fit/));
  assert.equal(planQedHeader({ size: GiB, clusterSize: 4096, backingFile: 'x'.repeat(4032) }).header.backingFilenameSize, 4032);
  // Multi-byte names are measured in bytes.
  assert.throws(() => planQedHeader({ size: GiB, clusterSize: 4096, backingFile: 'é'.repeat(2017) }), refusal('backing_file', /4034 bytes/));
});

test('a refused create leaves no file behind', async () => {
  const store = new MemoryStore();
  await assert.rejects(createImage('x.qed', { store, size: GiB, clusterSize: 1000 }), UsageError);
  assert.equal(store.files.has('x.qed'), false);
});

test('a backing format without a backing file is refused', () => {
  assert.throws(() => planQedHeader({ size: GiB, backingFormat: 'raw' }), refusal('backing_fmt', /needs a backing file/));
});

test('every geometry creates an image that opens, reads zeros, takes writes and checks clean (table_size 1 too)', async () => {
  for (const clusterSize of [4096, 65536]) {
    for (const tableSize of [1, 2, 4, 16]) {
      const store = new MemoryStore();
      const size = Math.min(3 * clusterSize * (tableSize * clusterSize / 8), 64 * 2 ** 20) + 1536;
      await createImage('g.qed', { store, size, clusterSize, tableSize });
      const device = await openDevice('g.qed', { store });
      const end = new Uint8Array(700);
      await device.read(end, size - 700);
      assert.deepEqual(end, new Uint8Array(700));
      await device.write(new Uint8Array(700).fill(3), size - 700);
      await device.close();
      const file = store.files.get('g.qed')!;
      const { header } = await readHeader(file);
      const result = await checkImage(file, header);
      assert.equal(result.corruptions + result.leaks, 0, `${clusterSize}/${tableSize}: ${result.problems.join('; ')}`);
      assert.equal(result.allocatedClusters, 1);
    }
  }
});
