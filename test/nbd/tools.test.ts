// The client wrappers of test/support/nbd-tools.ts proven against qemu-nbd and nbdkit, so a
// failure against our server is never the harness: nbdinfo (--json, --list, --map and
// --map=qemu:allocation-depth), nbdcopy both ways and with --connections=4, qemu-img convert
// from an export, fio's nbd engine with verify, and nbdsh with strict mode off sending what
// libnbd would normally refuse.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  fioNbd, nbdcopy, nbdinfo, nbdinfoJson, nbdinfoMap, nbdScratch, nbdsh, qemuImg, qemuIo, startNbdkit, startQemuNbd, toolOk,
} from '../support/nbd-tools.js';

const MiB = 1024 * 1024;

async function image(dir: string, name = 'disk.qed'): Promise<string> {
  const path = join(dir, name);
  await toolOk('create', qemuImg(['create', '-q', '-f', 'qed', path, '32M']));
  await toolOk('write', qemuIo(['-f', 'qed', '-c', 'write -P 0x61 0 2M', '-c', 'write -P 0x62 10M 64k', path]));
  return path;
}

describe('NBD client wrappers against qemu-nbd and nbdkit', { concurrency: 2 }, () => {
  it('nbdinfo --json, --list, --map and --map=qemu:allocation-depth read qemu-nbd -A', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQemuNbd(t, { image: await image(dir), listen: 'unix', dir, flags: ['-t', '-e', '4', '-A', '-x', 'disk'] });
    const json = await nbdinfoJson(server.uri('disk'), ['--no-content']);
    assert.equal(json.protocol, 'newstyle-fixed');
    assert.equal(json.exports[0]!['export-size'], 32 * MiB);
    assert.deepEqual(json.exports[0]!.contexts, ['base:allocation', 'qemu:allocation-depth']);
    const list = await toolOk('nbdinfo --list', nbdinfo(['--list', '--json', server.uri()]));
    assert.deepEqual((JSON.parse(list.stdout) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name']), ['disk']);
    const map = await nbdinfoMap(server.uri('disk'));
    assert.deepEqual(map.slice(0, 2).map((e) => [e.offset, e.length, e.type]), [[0, 2 * MiB, 0], [2 * MiB, 8 * MiB, 3]]);
    const depth = await nbdinfoMap(server.uri('disk'), 'qemu:allocation-depth');
    assert.deepEqual(depth.map((e) => e.description), ['local', 'absent', 'local', 'absent']);
  });

  it('nbdcopy to and from an export (4 connections), qemu-img convert from it, fio verify on it', async (t) => {
    const dir = await nbdScratch(t);
    const src = await image(dir);
    const server = await startQemuNbd(t, { image: src, listen: 'tcp', dir, flags: ['-t', '-e', '8'] });
    const raw = join(dir, 'copy.raw');
    await toolOk('nbdcopy export → file', nbdcopy([server.uri(), raw]));
    await toolOk('nbdcopy export → null:', nbdcopy(['--connections=4', server.uri(), 'null:']));
    await toolOk('nbdcopy file → export', nbdcopy(['--connections=4', '--flush', raw, server.uri()]));
    const converted = join(dir, 'converted.qed');
    await toolOk('qemu-img convert', qemuImg(['convert', '-O', 'qed', server.uri(), converted]));
    await toolOk('fio verify', fioNbd(server.uri(), { rw: 'randwrite', bs: '4k', size: '4M', offset: '16M', iodepth: 8, verify: 'crc32c', do_verify: 1, verify_fatal: 1 }));
    await server.stop();
    await toolOk('compare', qemuImg(['compare', '-f', 'qed', '-F', 'raw', converted, raw]));
  });

  it('nbdsh with strict mode off sends a read past the end and a zero-length read; nbdkit null serves its size', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQemuNbd(t, { image: await image(dir), listen: 'unix', dir });
    const r = await toolOk('nbdsh', nbdsh([
      'import errno',
      'try:',
      '    h.pread(512, h.get_size())',
      '    print("read past end: ok")',
      'except nbd.Error as e:',
      '    print("read past end:", errno.errorcode.get(e.errno, e.errno))',
      'print("zero-length:", len(h.pread(0, 0)))',
    ].join('\n'), { uri: server.uri(), strict: false }));
    assert.match(r.stdout, /read past end: EINVAL/);
    assert.match(r.stdout, /zero-length: 0/);

    const nullServer = await startNbdkit(t, { plugin: ['null', 'size=1G'], listen: 'tcp', dir });
    const json = await nbdinfoJson(nullServer.uri(), ['--no-content']);
    assert.equal(json.exports[0]!['export-size'], 1024 * MiB);
  });
});
