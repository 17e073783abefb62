// One writer per image across processes: while another process holds an image read-write,
// `qed` refuses to write it (and to edit its header), with one line on stderr and exit code
// 1, and still reads it with -U. A reader holding it keeps writers out but not other readers.
// The holder is a worker process using the library (test/support/hold-image.ts).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MiB, describeRun, ok, qed, qemuImg, scratch, sha256 } from '../support/cli-run.js';
import { holdImage } from '../support/hold-image.js';

/** The whole of stderr is one line naming the command, the file and QEMU's message and hint. */
function assertRefused(r: { code: number; stdout: string; stderr: string }, command: string, image: string, what: RegExp): void {
  assert.equal(r.code, 1, describeRun(`qed ${command}`, r));
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, describeRun(`qed ${command}`, r));
  assert.match(lines[0]!, new RegExp(`^qed: ${command}: ${image}: ${what.source}: Is another process using the image \\[${image}\\]\\?$`));
}

const WRITE = /Failed to get "write" lock/;
const SHARED_WRITE = /Failed to get shared "write" lock/;

describe('image locking between processes', { concurrency: 2 }, () => {
  it('while another process writes an image, a second writer is refused and -U readers still read it', async (t) => {
    const dir = await scratch(t);
    await ok('create', qed(['create', '-f', 'qed', 'disk.qed', '1M'], dir));
    await ok('write', qed(['io', '-c', 'write -P 0x5a 0 64k', 'disk.qed'], dir));
    const holder = await holdImage(join(dir, 'disk.qed'), 'read-write');
    try {
      assertRefused(await qed(['io', '-c', 'write 0 4k', 'disk.qed'], dir), 'io', 'disk.qed', WRITE);
      assertRefused(await qed(['io', '-r', '-c', 'read 0 4k', 'disk.qed'], dir), 'io', 'disk.qed', SHARED_WRITE);
      assertRefused(await qed(['info', 'disk.qed'], dir), 'info', 'disk.qed', SHARED_WRITE);
      assertRefused(await qed(['map', 'disk.qed'], dir), 'map', 'disk.qed', SHARED_WRITE);
      assertRefused(await qed(['check', 'disk.qed'], dir), 'check', 'disk.qed', SHARED_WRITE);

      assert.match((await ok('info -U', qed(['info', '-U', 'disk.qed'], dir))).stdout, /^image: disk\.qed$/m);
      assert.match((await ok('io -r -U', qed(['io', '-r', '-U', '-c', 'read -P 0x5a 0 64k', 'disk.qed'], dir))).stdout, /^read 65536\/65536 bytes/m);
      await ok('map -U', qed(['map', '-U', 'disk.qed'], dir));
      await ok('check -U', qed(['check', '-U', 'disk.qed'], dir));
      await ok('compare -U', qed(['compare', '-U', 'disk.qed', 'disk.qed'], dir));
      await ok('measure -U', qed(['measure', '-U', '-O', 'qed', 'disk.qed'], dir));
      await ok('convert -U', qed(['convert', '-U', '-O', 'raw', 'disk.qed', 'copy.raw'], dir));
    } finally {
      await holder.release();
    }
    await ok('write after the holder closed', qed(['io', '-c', 'write 0 4k', 'disk.qed'], dir));
  });

  it('qed amend on an image another process has open read-write is refused and changes no byte', async (t) => {
    const dir = await scratch(t);
    await ok('create base', qed(['create', '-f', 'raw', 'base.raw', '1M'], dir));
    await ok('create', qed(['create', '-f', 'qed', 'disk.qed', '1M'], dir));
    const before = await sha256(join(dir, 'disk.qed'));
    const holder = await holdImage(join(dir, 'disk.qed'), 'read-write');
    try {
      assertRefused(await qed(['amend', '-o', 'backing_file=base.raw,backing_fmt=raw', 'disk.qed'], dir), 'amend', 'disk.qed', WRITE);
      assertRefused(await qed(['check', '-r', 'all', 'disk.qed'], dir), 'check', 'disk.qed', WRITE);
      assertRefused(await qed(['create', '-f', 'qed', 'disk.qed', '2M'], dir), 'create', 'disk.qed', WRITE);
      assert.equal(await sha256(join(dir, 'disk.qed')), before);
    } finally {
      await holder.release();
    }
    await ok('amend after the holder closed', qed(['amend', '-o', 'backing_file=base.raw,backing_fmt=raw', 'disk.qed'], dir));
  });

  it('a process reading an image keeps writers out and lets other readers in; -U with a read-write open is a usage error', async (t) => {
    const dir = await scratch(t);
    await ok('create', qed(['create', '-f', 'qed', 'disk.qed', '1M'], dir));
    const holder = await holdImage(join(dir, 'disk.qed'), 'read-only');
    try {
      assertRefused(await qed(['io', '-c', 'write 0 4k', 'disk.qed'], dir), 'io', 'disk.qed', WRITE);
      await ok('info', qed(['info', 'disk.qed'], dir));
      await ok('io -r', qed(['io', '-r', '-c', 'read 0 4k', 'disk.qed'], dir));
      const r = await qed(['io', '-U', '-c', 'read 0 4k', 'disk.qed'], dir);
      assert.equal(r.code, 1, describeRun('io -U without -r', r));
      assert.match(r.stderr, /force-share can only be used with read-only images/);
    } finally {
      await holder.release();
    }
  });

  it('a backing file in use as a backing file cannot be committed into by a second process, nor written', async (t) => {
    const dir = await scratch(t);
    await ok('create base', qed(['create', '-f', 'qed', 'base.qed', '1M'], dir));
    await ok('create top', qed(['create', '-f', 'qed', '-b', 'base.qed', '-F', 'qed', 'top.qed'], dir));
    const holder = await holdImage(join(dir, 'top.qed'), 'read-write');
    try {
      assertRefused(await qed(['io', '-c', 'write 0 4k', 'base.qed'], dir), 'io', 'base.qed', WRITE);
      await ok('info base', qed(['info', 'base.qed'], dir));
    } finally {
      await holder.release();
    }
  });

  it('--no-lock opens without taking or respecting locks', async (t) => {
    const dir = await scratch(t);
    await ok('create', qed(['create', '-f', 'qed', 'disk.qed', '1M'], dir));
    const holder = await holdImage(join(dir, 'disk.qed'), 'read-only');
    try {
      await ok('--no-lock io', qed(['--no-lock', 'io', '-c', 'write 0 4k', 'disk.qed'], dir));
    } finally {
      await holder.release();
    }
  });

  it('commit writes into the backing file while the overlay is open only for reading by commit itself', async (t) => {
    const dir = await scratch(t);
    await ok('create base', qed(['create', '-f', 'qed', 'base.qed', `${MiB}`], dir));
    await ok('create top', qed(['create', '-f', 'qed', '-b', 'base.qed', '-F', 'qed', 'top.qed'], dir));
    await ok('write', qed(['io', '-c', 'write -P 7 0 64k', 'top.qed'], dir));
    await ok('commit', qed(['commit', 'top.qed'], dir));
    await ok('read base', qed(['io', '-r', '-c', 'read -P 7 0 64k', 'base.qed'], dir));
    await ok('qemu-img check', qemuImg(['check', 'base.qed'], dir));
  });
});
