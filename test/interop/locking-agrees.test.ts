// qed and QEMU's tools respect each other's image locks: both take QEMU's lock bytes with
// open-file-description locks. While qemu-io holds an image read-write, qed refuses to write
// or plainly read it and reads it with -U; while qed holds it, qemu-img and qemu-io refuse in
// the same way, with the same words, and read it with -U.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { describeRun, qed, qemuImg, qemuIo, scratchDir, succeed } from '../support/qemu.js';
import { holdImage, holdWithQemuIo } from '../support/hold-image.js';

const HINT = (image: string) => `Is another process using the image \\[${image}\\]\\?`;

function assertFails(what: string, r: { code: number; stdout: string; stderr: string }, message: RegExp): void {
  assert.notEqual(r.code, 0, describeRun(what, r));
  assert.match(r.stderr, message, describeRun(what, r));
}

describe('image locks shared with QEMU', { concurrency: 2 }, () => {
  it('while qemu-io has the image open read-write, qed refuses to write or read it plainly and reads it with -U', async (t) => {
    const dir = await scratchDir(t);
    await succeed('create', qemuImg(['create', '-q', '-f', 'qed', 'disk.qed', '1M'], { cwd: dir }));
    await succeed('write', qemuIo(['-f', 'qed', '-c', 'write -P 0x33 0 64k', 'disk.qed'], { cwd: dir }));
    const holder = await holdWithQemuIo('disk.qed', { cwd: dir });
    try {
      const write = await qed(['io', '-c', 'write 0 4k', 'disk.qed'], { cwd: dir });
      assertFails('qed io write', write, new RegExp(`^qed: io: disk\\.qed: Failed to get "write" lock: ${HINT('disk.qed')}\\n$`));
      assert.equal(write.code, 1);
      assertFails('qed info', await qed(['info', 'disk.qed'], { cwd: dir }), /Failed to get shared "write" lock/);
      await succeed('qed info -U', qed(['info', '-U', 'disk.qed'], { cwd: dir }));
      await succeed('qed io -r -U', qed(['io', '-r', '-U', '-c', 'read -P 0x33 0 64k', 'disk.qed'], { cwd: dir }));
    } finally {
      await holder.release();
    }
    await succeed('qed io write after qemu-io exited', qed(['io', '-c', 'write 0 4k', 'disk.qed'], { cwd: dir }));
  });

  it('while qed has the image open read-write, qemu-img info and qemu-io fail with their lock messages and -U works', async (t) => {
    const dir = await scratchDir(t);
    await succeed('create', qed(['create', '-f', 'qed', 'disk.qed', '1M'], { cwd: dir }));
    const holder = await holdImage(join(dir, 'disk.qed'), 'read-write');
    try {
      assertFails('qemu-img info', await qemuImg(['info', 'disk.qed'], { cwd: dir }), new RegExp(`Failed to get shared "write" lock\\n${HINT('disk.qed')}`));
      assertFails('qemu-io write', await qemuIo(['-f', 'qed', '-c', 'write 0 4k', 'disk.qed'], { cwd: dir }), new RegExp(`Failed to get "write" lock\\n${HINT('disk.qed')}`));
      assert.match((await succeed('qemu-img info -U', qemuImg(['info', '-U', 'disk.qed'], { cwd: dir }))).stdout, /^file format: qed$/m);
      await succeed('qemu-io -r -U', qemuIo(['-f', 'qed', '-r', '-U', '-c', 'read 0 4k', 'disk.qed'], { cwd: dir }));
    } finally {
      await holder.release();
    }
    await succeed('qemu-img info after qed exited', qemuImg(['info', 'disk.qed'], { cwd: dir }));
  });

  it('a backing file qed reads under an overlay is shared with QEMU readers and closed to QEMU writers, as QEMU does', async (t) => {
    const dir = await scratchDir(t);
    await succeed('create base', qemuImg(['create', '-q', '-f', 'qed', 'base.qed', '1M'], { cwd: dir }));
    await succeed('create top', qemuImg(['create', '-q', '-f', 'qed', '-b', 'base.qed', '-F', 'qed', 'top.qed'], { cwd: dir }));
    const holder = await holdImage(join(dir, 'top.qed'), 'read-write');
    try {
      assertFails('qemu-io write base', await qemuIo(['-f', 'qed', '-c', 'write 0 4k', 'base.qed'], { cwd: dir }), /Failed to get "write" lock/);
      await succeed('qemu-img info base', qemuImg(['info', 'base.qed'], { cwd: dir }));
    } finally {
      await holder.release();
    }
    // And the other way round: QEMU holding the overlay keeps qed from writing the base.
    const qemu = await holdWithQemuIo('top.qed', { cwd: dir });
    try {
      assertFails('qed io write base', await qed(['io', '-c', 'write 0 4k', 'base.qed'], { cwd: dir }), /Failed to get "write" lock/);
      await succeed('qed info base', qed(['info', 'base.qed'], { cwd: dir }));
    } finally {
      await qemu.release();
    }
  });
});
