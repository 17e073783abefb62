// Every hostile header of reliability.md ("Hostile images / Header") is refused with its own
// error naming the field, through readHeader and through openDevice, without reading (or
// allocating) anything a claimed size asks for. Fixtures come from the independent builder.
import test from 'node:test';
import assert from 'node:assert/strict';
import { FormatError, QedError, UnsupportedError } from '../../../src/base/errors.js';
import { readHeader } from '../../../src/engine/open.js';
import { MemoryFile, MemoryStore } from '../../../src/io/memory-file.js';
import { openDevice } from '../../../src/ops/open.js';
import { ImageBuilder, F_BACKING_FILE, headerBytes } from '../../support/image-builder.js';
import { ReadSpyStore } from '../../support/read-spy.js';

interface Refusal { cls: typeof FormatError | typeof UnsupportedError; code: string; field: string; message: RegExp }

interface Case extends Refusal {
  name: string;
  /** The image: a builder to adjust, or a finished file. */
  build: () => MemoryFile;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** A QEMU-default image (64 KiB clusters, 4-cluster tables, 1 MiB), adjusted by `change`. */
function image(change: (b: ImageBuilder) => void, options: ConstructorParameters<typeof ImageBuilder>[0] = {}): () => MemoryFile {
  return () => {
    const b = new ImageBuilder({ imageSize: MiB, ...options });
    change(b);
    return b.toFile();
  };
}

const format = (field: string, message: RegExp): Refusal => ({ cls: FormatError, code: 'FORMAT', field, message });

const cases: Case[] = [
  { name: 'bad magic', build: image((b) => { b.header.magic = 0x464f4f21; }), ...format('magic', /bad magic 0x464f4f21/) },
  { name: 'empty file', build: () => new MemoryFile(), ...format('header', /too small/) },
  { name: 'file truncated inside the 64 header bytes', build: () => { const f = new MemoryFile(); f.writeSync(headerBytes(new ImageBuilder().header).subarray(0, 40), 0); return f; }, ...format('header', /too small .*40 bytes/) },
  { name: 'file truncated inside the header cluster', build: image((b) => b.truncate(100)), ...format('header_size', /header_size 1 is invalid/) },

  { name: 'cluster_size not a power of two', build: image((b) => { b.header.clusterSize = 5000; }), ...format('cluster_size', /cluster_size 5000 is invalid/) },
  { name: 'cluster_size below 4 KiB', build: image((b) => { b.header.clusterSize = 2048; }), ...format('cluster_size', /cluster_size 2048 is invalid/) },
  { name: 'cluster_size above 64 MiB', build: image((b) => { b.header.clusterSize = 128 * MiB; }), ...format('cluster_size', /cluster_size 134217728 is invalid/) },
  { name: 'cluster_size 0', build: image((b) => { b.header.clusterSize = 0; }), ...format('cluster_size', /cluster_size 0 is invalid/) },
  { name: 'cluster_size 2^32-1', build: image((b) => { b.header.clusterSize = 0xffffffff; }), ...format('cluster_size', /cluster_size 4294967295 is invalid/) },

  { name: 'table_size 0', build: image((b) => { b.header.tableSize = 0; }), ...format('table_size', /table_size 0 is invalid/) },
  { name: 'table_size not a power of two', build: image((b) => { b.header.tableSize = 3; }), ...format('table_size', /table_size 3 is invalid/) },
  { name: 'table_size above 16', build: image((b) => { b.header.tableSize = 32; }), ...format('table_size', /table_size 32 is invalid/) },

  { name: 'header_size 0', build: image((b) => { b.header.headerSize = 0; }), ...format('header_size', /header_size 0 is invalid/) },
  { name: 'header_size past the end of the file', build: image((b) => { b.header.headerSize = 6; }), ...format('header_size', /header_size 6 is invalid/) },
  { name: 'header_size * cluster_size beyond 2^53 (overflow)', build: image((b) => { b.header.headerSize = 0xffffffff; b.header.clusterSize = 64 * MiB; }), ...format('header_size', /header_size 4294967295 is invalid/) },

  { name: 'unknown feature bit', build: image((b) => { b.header.features = 0x8n; }), cls: UnsupportedError, code: 'UNSUPPORTED', field: 'features', message: /feature bits 0x8\b/ },
  { name: 'unknown high feature bit with known ones', build: image((b) => { b.header.features = (1n << 63n) | 0x2n; }), cls: UnsupportedError, code: 'UNSUPPORTED', field: 'features', message: /feature bits 0x8000000000000000/ },

  { name: 'l1_table_offset misaligned', build: image((b) => { b.header.l1TableOffset = 0x10200n; }), ...format('l1_table_offset', /0x10200 is not cluster-aligned/) },
  { name: 'l1_table_offset 0 (the header)', build: image((b) => { b.header.l1TableOffset = 0n; }), ...format('l1_table_offset', /0x0 lies inside the header/) },
  { name: 'l1_table_offset inside a 2-cluster header', build: image((b) => { b.header.l1TableOffset = 0x10000n; }, { headerSize: 2 }), ...format('l1_table_offset', /0x10000 lies inside the header/) },
  { name: 'l1_table_offset past the end of the file', build: image((b) => { b.header.l1TableOffset = 0x100000n; }), ...format('l1_table_offset', /extends past the end of the file/) },
  { name: 'L1 table running past the end of the file', build: image((b) => { b.header.l1TableOffset = 0x20000n; }), ...format('l1_table_offset', /L1 table at 0x20000 \(0x40000 bytes\) extends past the end of the file \(0x50000\)/) },
  { name: 'l1_table_offset near 2^64', build: image((b) => { b.header.l1TableOffset = 0xffffffffffff0000n; }), ...format('l1_table_offset', /0xffffffffffff0000/) },

  { name: 'image_size not a multiple of 512', build: image((b) => { b.header.imageSize = 1000n; }), ...format('image_size', /image_size 1000 is not a multiple of 512/) },
  { name: 'image_size beyond the L1 capacity', build: image((b) => { b.header.imageSize = 0x400000000000n + 512n; }), ...format('image_size', /exceeds the L1 capacity 70368744177664/) },
  { name: 'image_size near 2^64', build: image((b) => { b.header.imageSize = 0xfffffffffffffe00n; }), ...format('image_size', /image_size 18446744073709551104/) },
  {
    // 64 MiB clusters and 16-cluster tables: a capacity of 2^80, so 2^64-512 is "within capacity"
    // (QEMU's uint64 capacity wraps to 0 here) but beyond any offset arithmetic in doubles.
    name: 'image_size near 2^64 within a 2^80 capacity',
    build: image((b) => { b.header.imageSize = 0xfffffffffffffe00n; }, { clusterSize: 64 * MiB, tableSize: 16 }),
    ...format('image_size', /too large to address/),
  },

  { name: 'backing flag without a name', build: image((b) => { b.header.features = F_BACKING_FILE; b.header.backingFilenameOffset = 64; }), ...format('backing_filename_size', /name is empty/) },
  { name: 'backing name size huge', build: image((b) => { b.backing('base.raw'); b.header.backingFilenameSize = 0xffffffff; }), ...format('backing_filename_size', /4294967295 exceeds 4095/) },
  { name: 'backing name longer than QEMU reads (4096)', build: image((b) => { b.backing('x'.repeat(4096)); }), ...format('backing_filename_size', /4096 exceeds 4095/) },
  { name: 'backing name past the header clusters', build: image((b) => { b.backing('base.raw', false, 0x10000 - 4); }), ...format('backing_filename_offset', /at 0xfffc \(8 bytes\) lies outside the header clusters \(0x10000 bytes\)/) },
  { name: 'backing name offset past the header clusters', build: image((b) => { b.backing('base.raw'); b.header.backingFilenameOffset = 0x20000; }), ...format('backing_filename_offset', /at 0x20000/) },
  { name: 'backing name over the 64 header bytes', build: image((b) => { b.backing('base.raw'); b.header.backingFilenameOffset = 8; }), ...format('backing_filename_offset', /at 0x8 /) },
  {
    // QEMU adds the two u32 fields in u32: 0xffffff00 + 0x200 wraps to 0x100 and passes.
    name: 'backing name offset + size wrapping past 2^32',
    build: image((b) => { b.backing('base.raw'); b.header.backingFilenameOffset = 0xffffff00; b.header.backingFilenameSize = 0x200; }),
    ...format('backing_filename_offset', /at 0xffffff00 \(512 bytes\)/),
  },
  { name: 'backing name with a NUL byte', build: image((b) => { b.backing('base\0raw'); }), ...format('backing_filename', /NUL/) },
];

async function assertRefused(attempt: Promise<unknown>, c: Refusal): Promise<void> {
  await assert.rejects(attempt, (err: unknown) => {
    assert.ok(err instanceof c.cls, `expected ${c.cls.name}, got ${String(err)}`);
    assert.ok(err instanceof QedError);
    assert.equal(err.code, c.code);
    assert.equal(err.field, c.field);
    assert.match(err.message, c.message);
    assert.doesNotMatch(err.message, /\n/, 'one line');
    return true;
  });
}

for (const c of cases) {
  test(`readHeader refuses ${c.name} (${c.field}), reading no more than the header and a capped name`, async () => {
    const spy = new ReadSpyStore(new MemoryStore());
    const file = spy.view(c.build());
    await assertRefused(readHeader(file), c);
    assert.ok(spy.largestRead <= 4095, `largest read ${spy.largestRead} bytes`);
  });

  test(`openDevice refuses ${c.name} (${c.field}) with the same error`, async () => {
    const memory = new MemoryStore();
    memory.add('hostile.qed', c.build());
    const spy = new ReadSpyStore(memory);
    await assertRefused(openDevice('hostile.qed', { store: spy, format: 'qed' }), c);
    await assertRefused(openDevice('hostile.qed', { store: spy, format: 'qed', readOnly: true }), c);
    assert.ok(spy.largestRead <= 4095, `largest read ${spy.largestRead} bytes`);
  });
}

test('without a format, a file without QED magic is probed as raw, as QEMU probes it', async () => {
  const memory = new MemoryStore();
  memory.add('notqed.img', image((b) => { b.header.magic = 0x464f4f21; })());
  const device = await openDevice('notqed.img', { store: memory, readOnly: true });
  try {
    assert.equal(device.format, 'raw');
  } finally {
    await device.close();
  }
});

test('a backing offset and size are ignored when the backing flag is clear, as in QEMU', async () => {
  const memory = new MemoryStore();
  memory.add('a.qed', image((b) => { b.header.backingFilenameOffset = 0xffffff00; b.header.backingFilenameSize = 0xffffffff; })());
  const info = await readHeader(memory.files.get('a.qed')!.view(true));
  assert.equal(info.backingName, null);
});

test('unknown compat bits are accepted; unknown autoclear bits are cleared on a read-write open only', async () => {
  const memory = new MemoryStore();
  const file = memory.add('a.qed', image((b) => { b.header.compatFeatures = 0x10n; b.header.autoclearFeatures = 0xffn; })());
  const ro = await openDevice('a.qed', { store: memory, readOnly: true });
  await ro.close();
  assert.equal((await readHeader(file.view(true))).header.autoclearFeatures, 0xffn, 'read-only open leaves the header alone');
  const rw = await openDevice('a.qed', { store: memory });
  await rw.close();
  const after = (await readHeader(file.view(true))).header;
  assert.equal(after.autoclearFeatures, 0n);
  assert.equal(after.compatFeatures, 0x10n);
});

test('opening a valid image whose L1 table is 1 GiB reads only the header, and a read touches one table chunk', async () => {
  // 64 MiB clusters, 16-cluster tables: the L1 table alone is 1 GiB. Nothing may read it whole.
  const memory = new MemoryStore();
  memory.add('big.qed', new ImageBuilder({ clusterSize: 64 * MiB, tableSize: 16, imageSize: 2 ** 40 }).toFile('big.qed'));
  const spy = new ReadSpyStore(memory);
  const device = await openDevice('big.qed', { store: spy, readOnly: true });
  try {
    assert.ok(spy.largestRead <= 4096, `open read ${spy.largestRead} bytes at once`);
    const buf = new Uint8Array(512).fill(1);
    await device.read(buf, 2 ** 39);
    assert.deepEqual(buf, new Uint8Array(512));
    assert.ok(spy.largestRead <= 4096, `a read of one sector read ${spy.largestRead} bytes at once`);
  } finally {
    await device.close();
  }
});
