// `qed check` on hand-corrupted images, judged by `qemu-img check` on the same bytes: the same
// counts (corruptions, leaks, allocated, fragmented, total, check-errors), the same exit code,
// the same human text; then `qed check -r all` must leave an image that `qemu-img check` calls
// clean, with every still-valid cluster reading as before and each repaired entry's range
// reading what lies under it (the backing file, or zeros).
//
// Fixtures are written by QEMU (qemu-img create + qemu-io), so their layout is QEMU's, and the
// corruption is a byte patch made here. Layout of the main fixture (4 KiB clusters,
// table_size 4, 1 MiB, L1 at 0x1000..0x5000), asserted when it is built:
//   guest 0..8k    → data 0x5000, 0x6000 (then the L2 table at 0x7000..0xb000)
//   guest 64k      → data 0xb000
//   guest 128k     → zero cluster (L2 entry 1)
//   guest 200k     → data 0xc000           file size 0xd000
import assert from 'node:assert/strict';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  KiB, appendBytes, featuresOf, guestBytes, l2EntryFor, noise, ok, parseJson, patchU64, qed, qemuCheck, qemuImg,
  qemuWrite, readL2, readLayout, scratch, truncateFile, writeRaw, type CheckJson,
} from '../support/cli-run.js';

const IMAGE = 'img.qed';
const SIZE = 1024 * KiB;

interface Fixture { dir: string; backing: Buffer | null }

/** img.qed (optionally over base.raw, 1 MiB of noise), written by qemu-io. */
async function fixture(dir: string, options: { clusterSize: number; backing: boolean; writes: string[] }): Promise<Fixture> {
  let backing: Buffer | null = null;
  const create = ['create', '-q', '-f', 'qed', '-o', `cluster_size=${options.clusterSize}`];
  if (options.backing) {
    backing = Buffer.from(noise(SIZE, 0xbac));
    await writeRaw(join(dir, 'base.raw'), backing);
    create.push('-b', 'base.raw', '-F', 'raw');
  }
  await ok('qemu-img create', qemuImg([...create, IMAGE, String(SIZE)], dir));
  await qemuWrite(dir, IMAGE, options.writes);
  return { dir, backing };
}

const MAIN_WRITES = ['write -P 0x11 0 8k', 'write -P 0x22 64k 4k', 'write -z 128k 4k', 'write -P 0x33 200k 4k'];

async function mainFixture(dir: string, backing: boolean): Promise<Fixture> {
  const f = await fixture(dir, { clusterSize: 4 * KiB, backing, writes: MAIN_WRITES });
  const path = join(dir, IMAGE);
  const layout = await readLayout(path);
  assert.equal(layout.l1[0], 0x7000, 'QEMU put the L2 table after the first data clusters');
  const l2 = await readL2(path, layout, 0x7000);
  assert.deepEqual([l2[0], l2[1], l2[16], l2[32], l2[50]], [0x5000, 0x6000, 0xb000, 1, 0xc000], 'fixture layout');
  return f;
}

/** `before` with [offset, offset+length) replaced by what lies beneath: backing bytes or zeros. */
function withUnderlying(before: Buffer, f: Fixture, offset: number, length: number): Buffer {
  const out = Buffer.from(before);
  if (f.backing) f.backing.copy(out, offset, offset, offset + length);
  else out.fill(0, offset, offset + length);
  return out;
}

const COUNTED = ['total-clusters', 'corruptions', 'corruptions-fixed', 'check-errors', 'leaks', 'allocated-clusters', 'filename', 'format', 'fragmented-clusters'] as const;

/** qed's JSON without its extra key, which qemu-img never prints for QED. */
function withoutEndOffset(report: CheckJson): CheckJson {
  const { 'image-end-offset': _end, ...rest } = report;
  return rest;
}

/** The human report without qed's extra "Image end offset" line. */
function humanWithoutEndOffset(text: string): string {
  return text.replace(/^Image end offset: \d+\n/m, '');
}

interface Case {
  /** The property, as the test's name. */
  name: string;
  build(dir: string): Promise<Fixture>;
  corrupt(path: string): Promise<void>;
  /** What qemu-img check must say, so the test knows it broke what it meant to break. */
  qemu: { code: number; corruptions?: number; leaks?: number };
  /** qed's image-end-offset before repair: the end of the highest cluster still referenced. */
  endOffset: number;
  /** The guest content after repair, from the content before the corruption. */
  repaired(before: Buffer, f: Fixture): Buffer;
}

const cases: Case[] = [
  {
    name: 'a zeroed cluster appended to the file is one leak for both tools, and -r all truncates it away',
    build: (dir) => mainFixture(dir, true),
    corrupt: (path) => appendBytes(path, new Uint8Array(4 * KiB)),
    qemu: { code: 3, leaks: 1 },
    endOffset: 0xd000,
    repaired: (before) => before,
  },
  {
    name: 'an interior leak (an L2 entry cleared, its cluster orphaned mid-file) is counted as qemu-img counts it and reclaimed by -r all',
    build: (dir) => mainFixture(dir, true),
    corrupt: async (path) => patchU64(path, (await l2EntryFor(path, 64 * KiB)).entryOffset, 0),
    qemu: { code: 3, leaks: 1 },
    endOffset: 0xd000,
    repaired: (before, f) => withUnderlying(before, f, 64 * KiB, 4 * KiB),
  },
  {
    // The first write of an image puts its data before its L2 table (QEMU allocates data, then
    // the table). Orphan that data and the hole lies under the table: only moving the table
    // (table_size clusters) can give it back.
    name: 'an interior leak right under the L2 table is reclaimed by -r all as well',
    build: (dir) => fixture(dir, { clusterSize: 4 * KiB, backing: true, writes: ['write -P 0x11 0 8k'] }),
    corrupt: async (path) => {
      const entry = await l2EntryFor(path, 0);
      assert.equal(entry.value, 0x5000);
      assert.equal(entry.tableOffset, 0x7000);
      await patchU64(path, entry.entryOffset, 0);
    },
    qemu: { code: 3, leaks: 1 },
    endOffset: 0xb000,
    repaired: (before, f) => withUnderlying(before, f, 0, 4 * KiB),
  },
  {
    name: 'a cluster referenced twice is one corruption for both tools, and -r all gives each reference its own copy',
    build: (dir) => mainFixture(dir, true),
    corrupt: async (path) => patchU64(path, (await l2EntryFor(path, 160 * KiB)).entryOffset, 0x5000),
    qemu: { code: 2, corruptions: 1 },
    endOffset: 0xd000,
    // While corrupted, guest 160k reads the shared cluster (guest 0's data); both keep reading it.
    repaired: (before) => { const out = Buffer.from(before); before.copy(out, 160 * KiB, 0, 4 * KiB); return out; },
  },
  {
    name: 'an L2 entry past the end of the file is a corruption (and its old cluster a leak); -r all clears it to read zeros',
    build: (dir) => mainFixture(dir, false),
    corrupt: async (path) => patchU64(path, (await l2EntryFor(path, 200 * KiB)).entryOffset, 0x100000),
    qemu: { code: 2, corruptions: 1, leaks: 1 },
    endOffset: 0xc000,
    repaired: (before, f) => withUnderlying(before, f, 200 * KiB, 4 * KiB),
  },
  {
    // NOTES §5's combined case: qemu-img -r all fixes the first, cannot fix the second, leaves the leak.
    name: 'a past-EOF entry, a cluster referenced twice and the leak they leave are counted together as qemu-img counts them, and -r all fixes all three',
    build: (dir) => mainFixture(dir, true),
    corrupt: async (path) => {
      await patchU64(path, (await l2EntryFor(path, 200 * KiB)).entryOffset, 0x100000);
      await patchU64(path, (await l2EntryFor(path, 160 * KiB)).entryOffset, 0x5000);
    },
    qemu: { code: 2, corruptions: 2, leaks: 1 },
    endOffset: 0xc000,
    repaired: (before, f) => { const out = withUnderlying(before, f, 200 * KiB, 4 * KiB); before.copy(out, 160 * KiB, 0, 4 * KiB); return out; },
  },
  {
    name: 'a misaligned data offset is a corruption (and the cluster it missed a leak); -r all clears it to read the backing file',
    build: (dir) => mainFixture(dir, true),
    corrupt: async (path) => patchU64(path, (await l2EntryFor(path, 64 * KiB)).entryOffset, 0xb200),
    qemu: { code: 2, corruptions: 1, leaks: 1 },
    endOffset: 0xd000,
    repaired: (before, f) => withUnderlying(before, f, 64 * KiB, 4 * KiB),
  },
  {
    // 64 KiB clusters: 0x1000 is misaligned and inside the header cluster.
    name: 'an L1 entry pointing into the header (0x1000) is one corruption and its table and data leaks; -r all clears it',
    build: async (dir) => {
      const f = await fixture(dir, { clusterSize: 64 * KiB, backing: true, writes: ['write -P 0x44 0 64k', 'write -P 0x55 512k 64k'] });
      assert.equal((await readLayout(join(dir, IMAGE))).l1[0], 0x60000, 'fixture layout: L2 table after the first data cluster');
      return f;
    },
    corrupt: async (path) => patchU64(path, (await readLayout(path)).l1Offset, 0x1000),
    qemu: { code: 2, corruptions: 1, leaks: 6 },
    endOffset: 0x50000,
    repaired: (before, f) => withUnderlying(before, f, 0, SIZE),
  },
  {
    name: 'a file truncated inside its last data cluster is one corruption, and -r all reports it fixed',
    build: (dir) => mainFixture(dir, true),
    corrupt: (path) => truncateFile(path, 0xc000 + 100),
    qemu: { code: 2, corruptions: 1 },
    endOffset: 0xc000,
    // qed's repair extends the cut cluster (src/check/check.ts): the 100 surviving bytes stay,
    // the lost rest reads as zeros.
    repaired: (before) => { const out = Buffer.from(before); out.fill(0, 200 * KiB + 100, 204 * KiB); return out; },
  },
  {
    name: 'a file truncated inside its L2 table is one corruption (the L1 entry) and leaks; -r all clears the entry',
    build: (dir) => mainFixture(dir, true),
    corrupt: (path) => truncateFile(path, 0x8000),
    qemu: { code: 2, corruptions: 1, leaks: 3 },
    endOffset: 0x5000,
    repaired: (before, f) => withUnderlying(before, f, 0, SIZE),
  },
];

describe('qed check on hand-corrupted images', { concurrency: 2 }, () => {
  for (const c of cases) {
    it(c.name, async (t) => {
      const dir = await scratch(t);
      const f = await c.build(dir);
      const path = join(dir, IMAGE);
      const before = await guestBytes(dir, IMAGE);
      await c.corrupt(path);

      // 1. The same verdict as qemu-img check.
      const theirs = await qemuCheck(dir, IMAGE);
      assert.equal(theirs.code, c.qemu.code, `fixture: qemu-img check exit code\n${theirs.ran.stdout}`);
      assert.equal(theirs.report.corruptions, c.qemu.corruptions, 'fixture: qemu-img corruptions');
      assert.equal(theirs.report.leaks, c.qemu.leaks, 'fixture: qemu-img leaks');
      const mine = await qed(['check', '--output=json', IMAGE], dir);
      const report = parseJson<CheckJson>('qed check', mine);
      assert.equal(mine.code, theirs.code, 'exit code');
      assert.deepEqual(withoutEndOffset(report), theirs.report);
      assert.deepEqual(Object.keys(withoutEndOffset(report)), Object.keys(theirs.report), 'key order');
      for (const key of COUNTED) assert.equal(report[key], theirs.report[key], key);
      assert.equal(report['image-end-offset'], c.endOffset, 'image-end-offset: end of the highest referenced cluster');

      const humanTheirs = await qemuImg(['check', IMAGE], dir);
      const humanMine = await qed(['check', IMAGE], dir);
      assert.equal(humanMine.code, humanTheirs.code);
      assert.equal(humanWithoutEndOffset(humanMine.stdout), humanTheirs.stdout);
      assert.match(humanMine.stdout, new RegExp(`^Image end offset: ${c.endOffset}$`, 'm'));

      // 2. Repair, then QEMU must call the image clean and the guest must see what it should.
      const repair = await qed(['check', '-r', 'all', '--output=json', IMAGE], dir);
      const repaired = parseJson<CheckJson>('qed check -r all', repair);
      const after = await qemuCheck(dir, IMAGE);
      assert.equal(after.code, 0, `qemu-img check after qed check -r all\n${after.ran.stdout}\nqed said:\n${repair.stdout}`);
      assert.equal(after.report.corruptions, undefined);
      assert.equal(after.report.leaks, undefined);
      const guest = await guestBytes(dir, IMAGE);
      assert.ok(guest.equals(c.repaired(before, f)), 'guest content after repair');
      assert.equal((await featuresOf(path)) & 0x2n, 0n, 'NEED_CHECK is clear');
      assert.equal(repair.code, 0, `qed check -r all exit code\n${repair.stdout}${repair.stderr}`);
      assert.equal(repaired.corruptions, undefined, 'no corruption left');
      assert.equal(repaired.leaks, undefined, 'no leak left');
      assert.equal(repaired['corruptions-fixed'], report.corruptions, `every corruption found is reported fixed\n${repair.stdout}`);
      assert.equal(repaired['leaks-fixed'], report.leaks, `every leak found is reported reclaimed\n${repair.stdout}`);
    });
  }

  it('an L2 table overlapping the L1 table: qed finds it with qemu-img\'s counts; qemu-img cannot repair it, qed clears the entry and both then call the image clean', async (t) => {
    const dir = await scratch(t);
    await mainFixture(dir, true);
    const path = join(dir, IMAGE);
    await patchU64(path, (await readLayout(path)).l1Offset, 0x1000); // L1[0] → the L1 table itself
    await copyFile(path, join(dir, 'theirs.qed'));

    const theirs = await qemuCheck(dir, IMAGE);
    assert.equal(theirs.code, 2);
    assert.equal(theirs.report.corruptions, 4, 'one per table cluster already in use (table_size 4)');
    const mine = await qed(['check', '--output=json', IMAGE], dir);
    assert.equal(mine.code, 2);
    assert.deepEqual(withoutEndOffset(parseJson<CheckJson>('qed check', mine)), theirs.report);
    assert.equal(parseJson<CheckJson>('qed check', mine)['image-end-offset'], 0x5000);

    const theirRepair = await qemuImg(['check', '-r', 'all', 'theirs.qed'], dir);
    assert.equal(theirRepair.code, 2, 'QEMU leaves the corruption');
    // A table cannot be both the L1 table and an L2 table: the entry is cleared (issue 15), so
    // that a dirty image with one always opens read-write after its repair.
    const myRepair = await qed(['check', '-r', 'all', '--output=json', IMAGE], dir);
    assert.equal(myRepair.code, 0, myRepair.stdout + myRepair.stderr);
    assert.equal(parseJson<CheckJson>('qed check -r all', myRepair)['corruptions-fixed'], 4);
    const after = await qemuCheck(dir, IMAGE);
    assert.equal(after.code, 0, after.ran.stdout);
    assert.equal((await featuresOf(path)) & 0x2n, 0n, 'NEED_CHECK is clear');
  });

  it('-r leaks gives back a leak that qemu-img -r leaks leaves in place', async (t) => {
    const dir = await scratch(t);
    await mainFixture(dir, false);
    const path = join(dir, IMAGE);
    await appendBytes(path, new Uint8Array(4 * KiB));
    await copyFile(path, join(dir, 'theirs.qed'));
    const theirs = await qemuImg(['check', '-r', 'leaks', 'theirs.qed'], dir);
    assert.equal(theirs.code, 3, 'QEMU cannot repair QED leaks');
    const mine = await qed(['check', '-r', 'leaks', IMAGE], dir);
    assert.equal(mine.code, 0, mine.stdout + mine.stderr);
    assert.match(mine.stdout, /^The following inconsistencies were found and repaired:\n\n {4}1 leaked clusters\n {4}0 corruptions\n\nDouble checking the fixed image now...\nNo errors were found on the image\.\n/);
    const after = await qemuCheck(dir, IMAGE);
    assert.equal(after.code, 0);
    assert.equal((await readFile(path)).length, 0xd000);
  });
});
