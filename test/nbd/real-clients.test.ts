// `qed serve` judged by the clients people use, on a unix socket and on 127.0.0.1: nbdinfo
// (size, flags, contexts, block sizes, --list with several exports, --map and
// --map=qemu:allocation-depth equal to what `qemu-nbd -A` reports for the same backing
// chain), nbdcopy both ways (also through four connections), qemu-io random writes that
// qemu-img then checks and compares with the same writes done by qemu-io on a copy,
// qemu-img convert from the export, fio's nbd engine with verify, and socket activation
// through `nbdinfo -- [ qed serve … ]`. QEMU's tools are the oracle throughout.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  QED_CLI, fioNbd, nbdcopy, nbdinfo, nbdinfoJson, nbdinfoMap, nbdScratch, qemuImg, qemuIo, startQedServe, startQemuNbd, toolOk,
} from '../support/nbd-tools.js';

const MiB = 1024 * 1024;

/** base.qed (32 MiB, 64 KiB clusters) with data, and top.qed over it with its own data and zeroes. */
async function chain(dir: string): Promise<{ base: string; top: string }> {
  const base = join(dir, 'base.qed');
  const top = join(dir, 'top.qed');
  await toolOk('create base', qemuImg(['create', '-q', '-f', 'qed', '-o', 'cluster_size=64k', base, '32M']));
  await toolOk('write base', qemuIo(['-f', 'qed', '-c', 'write -P 0x11 0 2M', '-c', 'write -P 0x12 8M 1M', '-c', 'write -P 0x13 20M 64k', base]));
  await toolOk('create top', qemuImg(['create', '-q', '-f', 'qed', '-b', base, '-F', 'qed', top]));
  await toolOk('write top', qemuIo(['-f', 'qed', '-c', 'write -P 0x21 1M 2M', '-c', 'write -z 8M 256k', '-c', 'write -P 0x22 30M 128k', top]));
  return { base, top };
}

/** A seeded list of qemu-io writes (patterns and zeroes), unaligned as well as aligned. */
function randomWrites(seed: number, count: number, size: number): string[] {
  let a = seed >>> 0;
  const next = (): number => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const len = [512, 4096, 65536, 3 * 512, 200 * 1024][Math.floor(next() * 5)]!;
    const off = Math.floor(next() * ((size - len) / 512)) * 512;
    out.push(next() < 0.15 ? `write -z ${off} ${len}` : `write -P ${1 + Math.floor(next() * 254)} ${off} ${len}`);
  }
  return out;
}

describe('qed serve with real clients', { concurrency: 2 }, () => {
  for (const listen of ['unix', 'tcp'] as const) {
    it(`nbdinfo over ${listen}: size, flags, both contexts, block sizes, the description; read-only flags with -r`, async (t) => {
      const dir = await nbdScratch(t);
      const { top } = await chain(dir);
      const server = await startQedServe(t, { files: [top], listen, dir, flags: ['-t', '-e', '4', '-x', 'disk', '-D', 'the top of a chain'] });
      const json = await nbdinfoJson(server.uri('disk'), ['--no-content']);
      assert.equal(json.protocol, 'newstyle-fixed');
      assert.equal(json.TLS, false);
      const e = json.exports[0]!;
      assert.equal(e['export-name'], 'disk');
      assert.equal(e.description, 'the top of a chain');
      assert.equal(e['export-size'], 32 * MiB);
      assert.deepEqual([...e.contexts!].sort(), ['base:allocation', 'qemu:allocation-depth']);
      assert.deepEqual(
        { ro: e.is_read_only, flush: e.can_flush, fua: e.can_fua, trim: e.can_trim, zero: e.can_zero, fastZero: e.can_fast_zero, df: e.can_df, multiConn: e.can_multi_conn, cache: e.can_cache },
        { ro: false, flush: true, fua: true, trim: true, zero: true, fastZero: true, df: true, multiConn: true, cache: true });
      assert.ok(e.block_size_minimum === 1 || e.block_size_minimum === 512, `minimum ${e.block_size_minimum}`);
      assert.equal(e.block_size_preferred, 65536, 'preferred block size = the cluster size');
      assert.equal(e.block_size_maximum, 32 * MiB);
      await server.stop();

      const ro = await startQedServe(t, { files: [top], listen, dir, flags: ['-t', '-r'] });
      const rj = (await nbdinfoJson(ro.uri(), ['--no-content'])).exports[0]!;
      assert.equal(rj.is_read_only, true);
      assert.equal(rj.can_trim, false);
      assert.equal(rj.can_zero, false);
      assert.equal(rj.can_multi_conn, false, 'one client at a time (-e 1): no multi-conn');
    });
  }

  it('several files: each exported under its base name, the first also as ""; --list shows them', async (t) => {
    const dir = await nbdScratch(t);
    const a = join(dir, 'a.qed'); const b = join(dir, 'b.raw');
    await toolOk('create a', qemuImg(['create', '-q', '-f', 'qed', a, '8M']));
    await toolOk('create b', qemuImg(['create', '-q', '-f', 'raw', b, '12M']));
    const server = await startQedServe(t, { files: [a, b], listen: 'unix', dir, flags: ['-t', '-e', '4'] });
    const list = await toolOk('nbdinfo --list', nbdinfo(['--list', '--json', '--no-content', server.uri()]));
    const exports = (JSON.parse(list.stdout) as { exports: Array<{ 'export-name': string; 'export-size': number }> }).exports;
    const sizes = Object.fromEntries(exports.map((e) => [e['export-name'], e['export-size']]));
    assert.equal(sizes['a.qed'], 8 * MiB);
    assert.equal(sizes['b.raw'], 12 * MiB);
    assert.equal((await nbdinfoJson(server.uri(''), ['--no-content'])).exports[0]!['export-size'], 8 * MiB);
    assert.equal((await nbdinfoJson(server.uri('b.raw'), ['--no-content'])).exports[0]!['export-size'], 12 * MiB);
    const missing = await nbdinfo(['--no-content', server.uri('c.qed')]);
    assert.notEqual(missing.code, 0);
  });

  it('--map and --map=qemu:allocation-depth over a backing chain equal qemu-nbd -A on the same image', async (t) => {
    const dir = await nbdScratch(t);
    const { top } = await chain(dir);
    const ours = await startQedServe(t, { files: [top], listen: 'unix', dir, flags: ['-t', '-r'] });
    const oursBase = await nbdinfoMap(ours.uri());
    const oursDepth = await nbdinfoMap(ours.uri(), 'qemu:allocation-depth');
    await ours.stop();
    const qemu = await startQemuNbd(t, { image: top, listen: 'unix', dir, flags: ['-t', '-r', '-A'] });
    const qemuBase = await nbdinfoMap(qemu.uri());
    const qemuDepth = await nbdinfoMap(qemu.uri(), 'qemu:allocation-depth');
    assert.deepEqual(oursBase, qemuBase);
    assert.deepEqual(oursDepth, qemuDepth);
    assert.ok(qemuDepth.some((e) => e.type === 2), 'the chain shows depth 2 somewhere');
  });

  it('nbdcopy into the export through 4 connections and back out; qemu-img compares the image with the source', async (t) => {
    const dir = await nbdScratch(t);
    const src = join(dir, 'src.raw');
    await toolOk('source', qemuImg(['create', '-q', '-f', 'raw', src, '24M']));
    await toolOk('source data', qemuIo(['-f', 'raw', '-c', 'write -P 0x31 0 3M', '-c', 'write -P 0x32 7M 512k', '-c', 'write -P 0x33 23M 1M', src]));
    const img = join(dir, 'dst.qed');
    await toolOk('create', qemuImg(['create', '-q', '-f', 'qed', img, '24M']));
    const server = await startQedServe(t, { files: [img], listen: 'tcp', dir, flags: ['-t', '-e', '4'] });
    assert.equal((await nbdinfoJson(server.uri(), ['--no-content'])).exports[0]!.can_multi_conn, true);
    await toolOk('nbdcopy in', nbdcopy(['--connections=4', '--requests=16', '--flush', src, server.uri()]));
    const back = join(dir, 'back.raw');
    await toolOk('nbdcopy out', nbdcopy(['--connections=4', server.uri(), back]));
    await toolOk('nbdcopy to null:', nbdcopy([server.uri(), 'null:']));
    const stopped = await server.stop();
    assert.equal(stopped.code, 0, `SIGTERM exit: ${JSON.stringify(stopped)}\n${server.stderr()}`);
    await toolOk('compare back', qemuImg(['compare', '-f', 'raw', '-F', 'raw', src, back]));
    await toolOk('compare image', qemuImg(['compare', '-f', 'qed', '-F', 'raw', img, src]));
    await toolOk('check image', qemuImg(['check', '-f', 'qed', img]));
  });

  it('qemu-io random writes over nbd+unix:// land exactly as qemu-io writes them into a copy; qemu-img check is clean', async (t) => {
    const dir = await nbdScratch(t);
    const { top } = await chain(dir);
    // The reference is the guest view as a raw file with the same writes applied by qemu-io: QEMU
    // 7.2's own QED driver is no oracle here, since a partial write into a zero cluster over a
    // backing file copies the backing data into the rest of the cluster (write -z 8406528 4096
    // on this chain makes 8M..8M+4k read 0x12 instead of zeroes).
    const reference = join(dir, 'reference.raw');
    await toolOk('guest view', qemuImg(['convert', '-O', 'raw', top, reference]));
    const writes = randomWrites(12, 150, 32 * MiB);
    await toolOk('qemu-io on the reference', qemuIo(['-f', 'raw', reference], { input: [...writes, 'flush', ''].join('\n') }));
    const server = await startQedServe(t, { files: [top], listen: 'unix', dir, flags: ['-t'] });
    await toolOk('qemu-io over NBD', qemuIo(['-f', 'raw', server.uri()], { input: [...writes, 'flush', ''].join('\n') }));
    const stopped = await server.stop();
    assert.equal(stopped.code, 0, server.stderr());
    await toolOk('check', qemuImg(['check', '-f', 'qed', top]));
    await toolOk('compare', qemuImg(['compare', '-f', 'qed', '-F', 'raw', top, reference]));
  });

  it('qemu-img convert from the export (TCP) reproduces the chain; fio randrw with verify passes', async (t) => {
    const dir = await nbdScratch(t);
    const { top } = await chain(dir);
    const server = await startQedServe(t, { files: [top], listen: 'tcp', dir, flags: ['-t', '-e', '2'] });
    const out = join(dir, 'converted.qcow2');
    await toolOk('convert', qemuImg(['convert', '-O', 'qcow2', server.uri(), out]));
    await toolOk('compare convert', qemuImg(['compare', '-U', '-F', 'qed', out, top]));
    const fioRun = await fioNbd(server.uri(), { rw: 'randrw', bs: '4k', size: '8M', offset: '12M', iodepth: 16, verify: 'crc32c', do_verify: 1, verify_fatal: 1, verify_backlog: 64 });
    assert.equal(fioRun.code, 0, fioRun.stderr + fioRun.stdout.slice(-2000));
    const seq = await fioNbd(server.uri(), { rw: 'write', bs: '1M', size: '4M', offset: '24M', iodepth: 4, verify: 'md5', do_verify: 1, verify_fatal: 1 });
    assert.equal(seq.code, 0, seq.stderr);
    await server.stop();
    await toolOk('check', qemuImg(['check', '-f', 'qed', top]));
  });

  it('socket activation: nbdinfo and nbdcopy -- [ qed serve … ] need no socket path', async (t) => {
    const dir = await nbdScratch(t);
    const { top } = await chain(dir);
    const info = await toolOk('nbdinfo -- [ qed serve ]', nbdinfo(['--json', '--no-content', '--', '[', process.execPath, QED_CLI, 'serve', '-r', top, ']']));
    assert.equal((JSON.parse(info.stdout) as { exports: Array<{ 'export-size': number }> }).exports[0]!['export-size'], 32 * MiB);
    const out = join(dir, 'activated.raw');
    await toolOk('nbdcopy -- [ qed serve ]', nbdcopy(['--', '[', process.execPath, QED_CLI, 'serve', '-r', top, ']', out]));
    await toolOk('compare', qemuImg(['compare', '-f', 'raw', '-F', 'qed', out, top]));
  });
});
