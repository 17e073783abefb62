// `qed check -r leaks` on an image QEMU wrote, with thousands of clusters above a leak low
// in the file (issue 11): the leak is given back in one pass, the file shrinks by exactly
// that cluster, the guest sees the same bytes (qemu-img compare), and qemu-img check calls
// the result clean.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  KiB, MiB, assertQemuClean, assertSameGuest, fileSize, l2EntryFor, ok, patchU64, qed, qemuCheck, qemuImg, qemuWrite, scratch,
} from '../support/cli-run.js';

const IMAGE = 'img.qed';
const CLUSTER = 64 * KiB;

describe('qed check -r leaks', () => {
  it('gives back one leaked cluster under 3000 data clusters: the file shrinks by one cluster, the guest is unchanged, qemu-img check calls it clean', async (t) => {
    const dir = await scratch(t);
    await ok('qemu-img create', qemuImg(['create', '-q', '-f', 'qed', '-o', 'cluster_size=64k', IMAGE, '256M'], dir));
    await qemuWrite(dir, IMAGE, ['write -P 0x11 0 64M', 'write -P 0x22 64M 64M', 'write -P 0x33 128M 60928k']);
    const path = join(dir, IMAGE);
    // Orphan guest cluster 1, low in the file: its entry cleared, its cluster a leak.
    const entry = await l2EntryFor(path, CLUSTER);
    assert.ok(entry.value < 4 * MiB, `guest cluster 1 lies low in the file (${entry.value})`);
    await patchU64(path, entry.entryOffset, 0);
    const leaked = await qemuCheck(dir, IMAGE);
    assert.equal(leaked.code, 3, leaked.ran.stdout);
    assert.equal(leaked.report.leaks, 1);
    assert.equal(leaked.report['allocated-clusters'], 2999);
    await copyFile(path, join(dir, 'before.qed'));
    const sizeBefore = await fileSize(path);

    const started = performance.now();
    const repair = await qed(['check', '-r', 'leaks', IMAGE], dir);
    t.diagnostic(`qed check -r leaks: ${Math.round(performance.now() - started)} ms for ${sizeBefore / CLUSTER} clusters`);
    assert.equal(repair.code, 0, repair.stdout + repair.stderr);
    assert.match(repair.stdout, /^The following inconsistencies were found and repaired:\n\n {4}1 leaked clusters\n {4}0 corruptions\n\nDouble checking the fixed image now...\nNo errors were found on the image\.\n/);
    assert.equal(await fileSize(path), sizeBefore - CLUSTER, 'exactly one cluster given back');
    await assertQemuClean(dir, IMAGE);
    await assertSameGuest(dir, 'before.qed', IMAGE);
  });
});
