// The parts of qemu-io's command language `qed io` took on for QEMU's iotests: vectored and
// asynchronous requests, open/close, alloc, read -s/-l, -p (accepted and ignored, as qemu-io
// 7.2 does), snapshot mode, copy-on-read, cache modes, commands from standard input, and
// failures worded as qemu-io words them. qemu-io runs the same commands on a copy of the same
// image: the lines (timings aside) and the bytes left behind must agree.
import assert from 'node:assert/strict';
import { copyFile, mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { QED_CLI, commandArgs, describeRun, qed, qemuImg, qemuIo, run, scratchDir, succeed, withoutTimings } from '../support/qemu.js';
import { sha256 } from '../support/cli-run.js';

/** image.qed (1 MiB, some data) copied to qemu.qed and ours.qed. */
async function twoCopies(t: { after(fn: () => Promise<void>): void }, backing = false): Promise<string> {
  const dir = await scratchDir(t);
  if (backing) {
    await succeed('create base', qemuImg(['create', '-q', '-f', 'qed', 'base.qed', '1M'], { cwd: dir }));
    await succeed('fill base', qemuIo(['-f', 'qed', '-c', 'write -P 0x5b 0 1M', 'base.qed'], { cwd: dir }));
  }
  const withBacking = backing ? ['-b', 'base.qed', '-F', 'qed'] : [];
  await succeed('create', qemuImg(['create', '-q', '-f', 'qed', ...withBacking, 'image.qed', '1M'], { cwd: dir }));
  await succeed('fill', qemuIo(['-f', 'qed', '-c', 'write -P 0xab 64k 64k', 'image.qed'], { cwd: dir }));
  await copyFile(join(dir, 'image.qed'), join(dir, 'qemu.qed'));
  await copyFile(join(dir, 'image.qed'), join(dir, 'ours.qed'));
  return dir;
}

async function sameAsQemuIo(dir: string, args: string[], input?: string): Promise<{ ours: string; theirs: string }> {
  const theirs = await qemuIo([...args, 'qemu.qed'], { cwd: dir, input });
  const ours = await qed(['io', ...args, 'ours.qed'], { cwd: dir, input });
  assert.equal(ours.code, theirs.code, `${describeRun('qed io', ours)}\n${describeRun('qemu-io', theirs)}`);
  assert.equal(withoutTimings(ours.stdout), withoutTimings(theirs.stdout));
  return { ours: ours.stdout, theirs: theirs.stdout };
}

async function assertSameContent(dir: string): Promise<void> {
  const r = await qemuImg(['compare', '-f', 'qed', '-F', 'qed', 'qemu.qed', 'ours.qed'], { cwd: dir });
  assert.equal(r.code, 0, describeRun('qemu-img compare', r));
}

describe('qed io speaks qemu-io 7.2', { concurrency: 2 }, () => {
  it('readv and writev with several lengths print and write as qemu-io does', async (t) => {
    const dir = await twoCopies(t);
    await sameAsQemuIo(dir, ['-f', 'qed', ...commandArgs([
      'writev -P 0x11 0 4k 512 3584', 'readv -P 0x11 0 4k 512 3584', 'readv -v 60k 16 16', 'writev 200k 1k', 'readv -q 0 8k', 'readv -P 0x22 0 512',
    ])]);
    await assertSameContent(dir);
  });

  it('read and write accept -p and -pP and ignore -p, as qemu-io 7.2 does', async (t) => {
    const dir = await twoCopies(t);
    await sameAsQemuIo(dir, ['-f', 'qed', ...commandArgs(['write -pP 0x33 100 300', 'read -pP 0x33 100 300', 'read -p 0 512', 'write -p 4k 4k'])]);
    await assertSameContent(dir);
  });

  it('read -P checks only the part -s and -l name', async (t) => {
    const dir = await twoCopies(t);
    await sameAsQemuIo(dir, ['-f', 'qed', ...commandArgs(['read -P 0xab -s 4k 60k 8k', 'read -P 0xab -s 4k -l 1k 60k 8k', 'read -P 0xab -l 8k 60k 8k', 'read -P 0 -s 2k 0 1k', 'read -s 1k 0 4k'])]);
  });

  it('alloc counts the bytes the top image holds, as qemu-io does', async (t) => {
    const dir = await twoCopies(t, true);
    await sameAsQemuIo(dir, ['-f', 'qed', ...commandArgs(['alloc 0', 'alloc 64k 64k', 'alloc 0 1M', 'alloc 96k 128k', 'alloc 1000k 100k'])]);
  });

  it('aio_write and aio_read run together; aio_flush waits for them; the same bytes result', async (t) => {
    const dir = await twoCopies(t);
    const commands: string[] = [];
    for (let i = 0; i < 16; i++) commands.push(`aio_write -P ${i + 1} ${i * 48}k 40k`);
    commands.push('aio_flush');
    for (let i = 0; i < 16; i++) commands.push(`aio_read -P ${i + 1} ${i * 48}k 40k`);
    commands.push('aio_flush', 'aio_write -z 0 64k', 'aio_flush', 'read -P 0 0 64k');
    const theirs = await qemuIo(['-f', 'qed', ...commandArgs(commands), 'qemu.qed'], { cwd: dir });
    const ours = await qed(['io', '-f', 'qed', ...commandArgs(commands), 'ours.qed'], { cwd: dir });
    assert.equal(ours.code, 0, describeRun('qed io', ours));
    assert.equal(theirs.code, 0, describeRun('qemu-io', theirs));
    // Completion order is the requests' own; the set of lines is what must agree.
    // qemu-io's aio_write -z reports a time measured from nothing: only the lines' starts compare.
    const lines = (s: string) => s.replace(/ ops; .*$/gm, ' ops;').split('\n').sort();
    assert.deepEqual(lines(ours.stdout), lines(theirs.stdout));
    assert.doesNotMatch(ours.stdout, /Pattern verification failed/);
    await assertSameContent(dir);
  });

  it('a failed aio request is reported when it completes and, as in qemu-io, leaves the exit code 0', async (t) => {
    const dir = await twoCopies(t);
    await sameAsQemuIo(dir, ['-f', 'qed', ...commandArgs(['aio_write 1M 4k', 'aio_flush', 'aio_read -P 0x77 0 4k', 'aio_flush'])]);
  });

  it('commands come from standard input after the qemu-io> prompt when no -c is given', async (t) => {
    const dir = await twoCopies(t);
    await sameAsQemuIo(dir, ['-f', 'qed'], 'write -P 0x44 0 4k\nread -P 0x44 0 4k\n\nbogus\nread 0\nquit\nwrite 8k 4k\n');
    await assertSameContent(dir);
  });

  it('open and close switch images within one run; commands without an image say so', async (t) => {
    const dir = await twoCopies(t);
    const theirs = await qemuIo(commandArgs(['read 0 512', 'open -r -f qed qemu.qed', 'open qemu.qed', 'read -P 0xab 64k 4k', 'write 0 512', 'close', 'read 0 512', 'open -o driver=qed qemu.qed', 'write -P 9 0 512']), { cwd: dir });
    const ours = await qed(['io', ...commandArgs(['read 0 512', 'open -r -f qed ours.qed', 'open ours.qed', 'read -P 0xab 64k 4k', 'write 0 512', 'close', 'read 0 512', 'open -o driver=qed ours.qed', 'write -P 9 0 512'])], { cwd: dir });
    assert.equal(ours.code, theirs.code, `${describeRun('qed io', ours)}\n${describeRun('qemu-io', theirs)}`);
    assert.equal(withoutTimings(ours.stdout), withoutTimings(theirs.stdout));
    assert.equal(ours.stderr.replace(/ours/g, 'qemu').replace(/^qed: io: /gm, 'qemu-io: '), theirs.stderr);
    await assertSameContent(dir);
  });

  it('-s writes to a temporary overlay: the image is unchanged afterwards', async (t) => {
    const dir = await twoCopies(t, true);
    const before = await sha256(join(dir, 'ours.qed'));
    await sameAsQemuIo(dir, ['-s', '-f', 'qed', ...commandArgs(['write -P 0x66 0 128k', 'read -P 0x66 0 128k', 'read -P 0x5b 128k 64k'])]);
    assert.equal(await sha256(join(dir, 'ours.qed')), before);
    await assertSameContent(dir);
  });

  it('-C copies what reads fetch from the backing file into the image, as qemu-io -C does', async (t) => {
    const dir = await twoCopies(t, true);
    await sameAsQemuIo(dir, ['-C', '-f', 'qed', ...commandArgs(['read -P 0x5b 0 64k', 'read 300k 100k', 'map'])]);
    const map = async (image: string, tool: typeof qed | typeof qemuIo, prefix: string[]) => (await tool([...prefix, '-f', 'qed', '-c', 'map', image], { cwd: dir })).stdout;
    assert.equal(await map('ours.qed', qed, ['io', '-r']), await map('qemu.qed', qemuIo, ['-r']));
    assert.match(await map('ours.qed', qed, ['io', '-r']), /^128 KiB \(0x20000\) bytes {5}allocated at offset 0 bytes/);
    await assertSameContent(dir);
  });

  it('-C on a read-only image is refused as qemu-io refuses it', async (t) => {
    const dir = await twoCopies(t, true);
    const r = await qed(['io', '-C', '-r', '-f', 'qed', '-c', 'read 0 512', 'ours.qed'], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^qed: io: ours\.qed: Can't use copy-on-read on read-only device\n$/);
  });

  it('cache modes: writeback, writethrough and unsafe open; none (O_DIRECT) and native aio are refused as not supported', async (t) => {
    const dir = await twoCopies(t);
    for (const mode of ['writeback', 'writethrough', 'unsafe']) {
      await succeed(`-t ${mode}`, qed(['io', '-t', mode, '--aio', 'threads', '-f', 'qed', '-c', 'write 0 4k', '-c', 'flush', 'ours.qed'], { cwd: dir }));
    }
    for (const args of [['-t', 'none'], ['-n'], ['--aio', 'native'], ['-k']]) {
      const r = await qed(['io', ...args, '-f', 'qed', '-c', 'read 0 4k', 'ours.qed'], { cwd: dir });
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, /not supported: /, args.join(' '));
    }
    assert.match((await qed(['io', '-t', 'sometimes', '-c', 'read 0 4k', 'ours.qed'], { cwd: dir })).stderr, /Invalid cache option: sometimes/);
  });

  it('failures print qemu-io\'s lines: past the end, bad numbers, bad patterns, unknown flags, read-only writes', async (t) => {
    const dir = await twoCopies(t);
    await sameAsQemuIo(dir, ['-f', 'qed', ...commandArgs(['write 1M 4k', 'read 1020k 8k', 'readv 1M 512', 'writev 1M 512', 'read 12x 4', 'write -P 300 0 1', 'read -P 1 -l 8k 0 4k', 'discard 1M 1M'])]);
    const theirs = await qemuIo(['-r', '-f', 'qed', '-c', 'write 0 4k', 'qemu.qed'], { cwd: dir });
    const ours = await qed(['io', '-r', '-f', 'qed', '-c', 'write 0 4k', 'ours.qed'], { cwd: dir });
    assert.equal(ours.code, theirs.code);
    assert.equal(ours.stderr.replace(/^qed: io: /, 'qemu-io: '), theirs.stderr);
  });

  it('run under the name qemu-io, it is `qed io` with qemu-io\'s error lines, word for word', async (t) => {
    const dir = await twoCopies(t);
    await mkdir(join(dir, 'bin'));
    await symlink(QED_CLI, join(dir, 'bin', 'qemu-io'));
    for (const image of ['missing.qed', 'image.qed']) {
      const commands = ['-c', 'read -P 0xab 64k 4k'];
      const base = image === 'image.qed' ? ['-f', 'qed'] : [];
      const theirs = await qemuIo([...base, ...commands, image], { cwd: dir });
      const ours = await run(process.execPath, [join(dir, 'bin', 'qemu-io'), ...base, ...commands, image], { cwd: dir });
      assert.equal(ours.code, theirs.code, describeRun('qed as qemu-io', ours));
      assert.equal(ours.stderr, theirs.stderr);
      assert.equal(withoutTimings(ours.stdout), withoutTimings(theirs.stdout));
    }
  });

  it('opens an image stored inside another image (open -o driver=qed,file.driver=qed,...)', async (t) => {
    const dir = await scratchDir(t);
    await succeed('create inner', qemuImg(['create', '-q', '-f', 'qed', 'inner.qed', '64M'], { cwd: dir }));
    await succeed('fill inner', qemuIo(['-f', 'qed', '-c', 'write -P 42 0 512', '-c', 'write -P 23 512 512', 'inner.qed'], { cwd: dir }));
    await succeed('wrap', qemuImg(['convert', '-f', 'raw', '-O', 'qed', 'inner.qed', 'outer.qed'], { cwd: dir }));
    const r = await succeed('nested read', qed(['io', '-c', 'open -o driver=qed,file.driver=qed,file.file.filename=outer.qed', '-c', 'read -P 42 0 512', '-c', 'read -P 23 512 512'], { cwd: dir }));
    assert.doesNotMatch(r.stdout, /Pattern verification failed/);
    assert.match(r.stdout, /read 512\/512 bytes at offset 512/);
  });

  it('the file and host_device drivers check the path as QEMU\'s do: same lines for a directory and /dev/null', async (t) => {
    const dir = await scratchDir(t);
    await mkdir(join(dir, 'adir'));
    await mkdir(join(dir, 'bin'));
    await symlink(QED_CLI, join(dir, 'bin', 'qemu-io'));
    for (const driver of ['file', 'host_device', 'host_cdrom']) {
      for (const target of ['adir', '/dev/null']) {
        for (const ro of ['-r ', '']) {
          const open = `open ${ro}-o driver=${driver},filename=${target}${target === '/dev/null' ? ',locking=off' : ''}`;
          const theirs = await qemuIo(['-c', open], { cwd: dir });
          const ours = await run(process.execPath, [join(dir, 'bin', 'qemu-io'), '-c', open], { cwd: dir });
          assert.equal(ours.code, theirs.code, `${open}\n${describeRun('qed io', ours)}`);
          assert.equal(ours.stderr, theirs.stderr, open);
        }
      }
    }
  });
});
