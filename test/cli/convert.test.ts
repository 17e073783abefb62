// `qed convert` against `qemu-img convert` on the same sources: raw→qed, qed→raw, qed→qed
// with -o cluster_size/table_size, -S 0 against the default sparse copy, -B/-F, -n into an
// existing image. Every output must compare identical to its source (qemu-img compare), pass
// qemu-img check, and be allocated where qemu-img's own output is allocated.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  KiB, MiB, allocatedSize, assertQemuClean, assertSameGuest, exists, fileSize, mapShape, noise, ok, parseJson, qed, qemuCheck,
  qemuImg, qemuMap, qemuWrite, readLayout, scratch, sha256, writeRaw,
} from '../support/cli-run.js';

/** 2 MiB raw, mostly a hole: data at 0 (64k), 1M (4k), 1900k (100k), and 64k of written zeros at 512k. */
async function sparseRaw(dir: string, name = 'src.raw'): Promise<void> {
  await writeRaw(join(dir, name), new Uint8Array(0), 2 * MiB);
  await qemuWrite(dir, name, ['write -P 7 0 64k', 'write -P 8 1M 4k', 'write -P 9 1900k 100k', 'write -P 0 512k 64k'], 'raw');
}

/** ov.qed: 2 MiB over base.raw (1 MiB of noise): data, a zero cluster over backing data, data past the backing. */
async function overlay(dir: string): Promise<void> {
  await writeRaw(join(dir, 'base.raw'), noise(MiB, 0x5eed));
  await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-b', 'base.raw', '-F', 'raw', 'ov.qed', '2M'], dir));
  await qemuWrite(dir, 'ov.qed', ['write -P 5 128k 4k', 'write -z 512k 64k', 'write -P 6 640k 128k', 'write -P 0 768k 64k', 'write -P 7 1500k 100k']);
}

/** Run the same convert through both tools; both must succeed silently. */
async function convertBoth(dir: string, args: readonly string[], theirs: string, mine: string): Promise<void> {
  const q = await qemuImg(['convert', ...args, theirs], dir);
  const m = await qed(['convert', ...args, mine], dir);
  assert.equal(q.code, 0, q.stderr);
  assert.equal(m.code, 0, m.stderr);
  assert.equal(m.stdout, q.stdout, 'stdout');
}

async function allocatedClusters(dir: string, image: string): Promise<number> {
  return (await qemuCheck(dir, image)).report['allocated-clusters'] ?? 0;
}

/** Same guest-visible allocation as qemu-img's output, same count of allocated clusters. */
async function assertAllocatedLikeQemu(dir: string, theirs: string, mine: string): Promise<void> {
  assert.deepEqual(mapShape(await qemuMap(dir, mine)), mapShape(await qemuMap(dir, theirs)), 'allocation as qemu-img convert leaves it');
  assert.equal(await allocatedClusters(dir, mine), await allocatedClusters(dir, theirs), 'allocated clusters');
}

describe('qed convert', { concurrency: 2 }, () => {
  it('raw → qed: a sparse 2 MiB source gives clusters only where data is, identical to the source, allocated as qemu-img allocates', async (t) => {
    const dir = await scratch(t);
    await sparseRaw(dir);
    await convertBoth(dir, ['-O', 'qed', 'src.raw'], 'q.qed', 'd.qed');
    await assertSameGuest(dir, 'src.raw', 'd.qed');
    await assertQemuClean(dir, 'd.qed');
    await assertAllocatedLikeQemu(dir, 'q.qed', 'd.qed');
    const data = (await qemuMap(dir, 'd.qed')).filter((e) => e.data).map((e) => [e.start, e.start + e.length]);
    const cluster = 64 * KiB;
    assert.deepEqual(data, [[0, cluster], [MiB, MiB + cluster], [29 * cluster, 2 * MiB]], 'data clusters: 0, 16, 29..31; the written zeros are not allocated');
    assert.equal(await fileSize(join(dir, 'd.qed')), await fileSize(join(dir, 'q.qed')), 'file size as qemu-img');
  });

  it('qed → raw: the raw file is byte-identical to qemu-img\'s and as sparse', async (t) => {
    const dir = await scratch(t);
    await overlay(dir);
    await convertBoth(dir, ['-O', 'raw', 'ov.qed'], 'q.raw', 'd.raw');
    assert.equal(await sha256(join(dir, 'd.raw')), await sha256(join(dir, 'q.raw')));
    await assertSameGuest(dir, 'ov.qed', 'd.raw');
    assert.equal(await allocatedSize(join(dir, 'd.raw')), await allocatedSize(join(dir, 'q.raw')), 'allocated bytes of the raw file');
  });

  it('qed → qed with -o cluster_size=4k,table_size=2: the header takes the options; content and allocation match qemu-img\'s output', async (t) => {
    const dir = await scratch(t);
    await overlay(dir);
    await convertBoth(dir, ['-O', 'qed', '-o', 'cluster_size=4k,table_size=2', 'ov.qed'], 'q.qed', 'd.qed');
    const layout = await readLayout(join(dir, 'd.qed'));
    assert.equal(layout.clusterSize, 4096);
    assert.equal(layout.tableSize, 2);
    assert.equal(layout.imageSize, 2 * MiB);
    assert.equal(layout.features, 0n, 'flattened: no backing file');
    await assertSameGuest(dir, 'ov.qed', 'd.qed');
    await assertQemuClean(dir, 'd.qed');
    await assertAllocatedLikeQemu(dir, 'q.qed', 'd.qed');
    assert.equal(await fileSize(join(dir, 'd.qed')), await fileSize(join(dir, 'q.qed')), 'file size as qemu-img');
  });

  it('-S 0 allocates every cluster as qemu-img -S 0 does; the default sparse copy allocates fewer', async (t) => {
    const dir = await scratch(t);
    await sparseRaw(dir);
    await convertBoth(dir, ['-S', '0', '-O', 'qed', 'src.raw'], 'q0.qed', 'd0.qed');
    await ok('qed convert', qed(['convert', '-O', 'qed', 'src.raw', 'd.qed'], dir));
    for (const image of ['d0.qed', 'd.qed']) {
      await assertSameGuest(dir, 'src.raw', image);
      await assertQemuClean(dir, image);
    }
    const full = await qemuCheck(dir, 'd0.qed');
    assert.equal(full.report['allocated-clusters'], full.report['total-clusters'], 'every cluster allocated');
    await assertAllocatedLikeQemu(dir, 'q0.qed', 'd0.qed');
    assert.equal(await fileSize(join(dir, 'd0.qed')), await fileSize(join(dir, 'q0.qed')));
    assert.ok(await allocatedClusters(dir, 'd.qed') < (full.report['allocated-clusters'] ?? 0));

    await convertBoth(dir, ['-S', '0', '-O', 'raw', 'src.raw'], 'q0.raw', 'd0.raw');
    assert.equal(await allocatedSize(join(dir, 'd0.raw')), 2 * MiB, '-S 0 raw output has no holes');
    assert.equal(await allocatedSize(join(dir, 'd0.raw')), await allocatedSize(join(dir, 'q0.raw')));
  });

  it('-B with -F writes only what differs from the new backing: identical guest, backing recorded, less allocated than without -B', async (t) => {
    const dir = await scratch(t);
    await overlay(dir);
    await convertBoth(dir, ['-O', 'qed', '-B', 'base.raw', '-F', 'raw', 'ov.qed'], 'qb.qed', 'db.qed');
    await ok('qed convert (no -B)', qed(['convert', '-O', 'qed', 'ov.qed', 'flat.qed'], dir));
    for (const image of ['db.qed', 'flat.qed']) {
      await assertSameGuest(dir, 'ov.qed', image);
      await assertQemuClean(dir, image);
    }
    const info = parseJson<Record<string, unknown>>('qemu-img info', await ok('info', qemuImg(['info', '--output=json', 'db.qed'], dir)));
    assert.equal(info['backing-filename'], 'base.raw');
    assert.equal(info['backing-filename-format'], 'raw');
    const flatInfo = parseJson<Record<string, unknown>>('qemu-img info', await ok('info', qemuImg(['info', '--output=json', 'flat.qed'], dir)));
    assert.equal(flatInfo['backing-filename'], undefined, 'without -B the chain is flattened');
    assert.ok(await allocatedClusters(dir, 'db.qed') < await allocatedClusters(dir, 'flat.qed'), 'fewer clusters with -B');
    assert.ok(await fileSize(join(dir, 'db.qed')) < await fileSize(join(dir, 'flat.qed')), 'smaller file with -B');
    await assertAllocatedLikeQemu(dir, 'qb.qed', 'db.qed');
  });

  it('-B onto a QED backing file (compacting an overlay over a copy of its base) writes only the overlay\'s differences, as qemu-img does', async (t) => {
    const dir = await scratch(t);
    await overlay(dir);
    await ok('base copy', qemuImg(['convert', '-O', 'qed', 'base.raw', 'base.qed'], dir));
    await convertBoth(dir, ['-O', 'qed', '-B', 'base.qed', '-F', 'qed', 'ov.qed'], 'qb.qed', 'db.qed');
    await assertSameGuest(dir, 'ov.qed', 'db.qed');
    await assertQemuClean(dir, 'db.qed');
    const info = parseJson<Record<string, unknown>>('qemu-img info', await ok('info', qemuImg(['info', '--output=json', 'db.qed'], dir)));
    assert.equal(info['backing-filename'], 'base.qed');
    assert.equal(info['backing-filename-format'], undefined, 'a QED backing is recorded without the raw bit');
    await assertAllocatedLikeQemu(dir, 'qb.qed', 'db.qed');
    assert.equal(await fileSize(join(dir, 'db.qed')), await fileSize(join(dir, 'qb.qed')), 'file size as qemu-img');
  });

  it('-n converts into an existing image of the same size, overwriting what was there, as qemu-img convert -n', async (t) => {
    const dir = await scratch(t);
    await overlay(dir);
    for (const name of ['q.qed', 'd.qed']) {
      await ok('create', qemuImg(['create', '-q', '-f', 'qed', name, '2M'], dir));
      await qemuWrite(dir, name, ['write -P 0x3c 0 2M']);
    }
    await convertBoth(dir, ['-n', '-O', 'qed', 'ov.qed'], 'q.qed', 'd.qed');
    await assertSameGuest(dir, 'ov.qed', 'q.qed');
    await assertSameGuest(dir, 'ov.qed', 'd.qed');
    await assertQemuClean(dir, 'd.qed');
  });

  it('-n into a smaller target fails with exit 1 like qemu-img and leaves the target byte-identical', async (t) => {
    const dir = await scratch(t);
    await overlay(dir);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'small.qed', '1M'], dir));
    const digest = await sha256(join(dir, 'small.qed'));
    const theirs = await qemuImg(['convert', '-n', '-O', 'qed', 'ov.qed', 'small.qed'], dir);
    const mine = await qed(['convert', '-n', '-O', 'qed', 'ov.qed', 'small.qed'], dir);
    assert.equal(theirs.code, 1);
    assert.equal(mine.code, 1);
    assert.match(mine.stderr, /^qed: convert: [^\n]+\n$/);
    assert.equal(await sha256(join(dir, 'small.qed')), digest);
  });

  it('a missing source or an invalid cluster_size fails with exit 1 like qemu-img, one error line, and no target file', async (t) => {
    const dir = await scratch(t);
    await sparseRaw(dir);
    const variants = [(target: string) => ['-O', 'qed', 'missing.raw', target], (target: string) => ['-O', 'qed', '-o', 'cluster_size=3k', 'src.raw', target]];
    for (const args of variants) {
      const theirs = await qemuImg(['convert', ...args('theirs.qed')], dir);
      const mine = await qed(['convert', ...args('out.qed')], dir);
      assert.equal(theirs.code, 1, args('').join(' '));
      assert.equal(mine.code, 1, args('').join(' '));
      assert.match(mine.stderr, /^qed: convert: [^\n]+\n$/);
      assert.equal(await exists(join(dir, 'out.qed')), false, `no target after: qed convert ${args('out.qed').join(' ')}`);
    }
  });

  it('-p draws nothing when stdout is not a terminal', async (t) => {
    const dir = await scratch(t);
    await sparseRaw(dir);
    const mine = await qed(['convert', '-p', '-O', 'qed', 'src.raw', 'p.qed'], dir);
    assert.deepEqual(mine, { stdout: '', stderr: '', code: 0 });
    await assertSameGuest(dir, 'src.raw', 'p.qed');
    await assertQemuClean(dir, 'p.qed');
  });
});
