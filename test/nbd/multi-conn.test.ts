// Several connections to one export and what CAN_MULTI_CONN promises: writes acknowledged on
// any connection are visible on every other at once, and a FLUSH on one connection makes them
// all durable (the server is SIGKILLed right after the flush and QEMU reads them back from the
// file). FUA writes are durable when acknowledged. Also the small lifecycle promises of the
// command line: --quiet prints nothing, --pid-file holds the pid, -p alone binds 127.0.0.1.
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CMD, CMD_FLAG, NbdRawClient, TX } from '../support/nbd-raw-client.js';
import { QED_CLI, nbdScratch, nbdinfoJson, qemuImg, qemuIo, startQedServe, startServer, toolOk, type Server } from '../support/nbd-tools.js';

const MiB = 1024 * 1024;

async function image(dir: string): Promise<string> {
  const path = join(dir, 'disk.qed');
  await toolOk('create', qemuImg(['create', '-q', '-f', 'qed', '-o', 'cluster_size=64k', path, '64M']));
  return path;
}

const connect = (s: Server): Promise<NbdRawClient> =>
  s.endpoint.kind === 'unix' ? NbdRawClient.unix(s.endpoint.path) : NbdRawClient.tcp(s.endpoint.port, s.endpoint.host);

describe('qed serve: several connections to one export', { concurrency: 2 }, () => {
  it('writes on four connections are visible on all of them; a FLUSH on one makes all acknowledged writes survive SIGKILL', async (t) => {
    const dir = await nbdScratch(t);
    const path = await image(dir);
    const server = await startQedServe(t, { files: [path], listen: 'unix', dir, flags: ['-t', '-e', '4'] });
    const conns = await Promise.all([0, 1, 2, 3].map(() => connect(server)));
    t.after(() => conns.forEach((c) => c.destroy()));
    for (const c of conns) {
      const go = await c.negotiate();
      assert.ok(go.flags! & TX.CAN_MULTI_CONN, 'multi-conn advertised with -e 4');
    }
    // Each connection writes its own pattern into 64 KiB blocks spread over the image (allocating clusters), all in flight at once.
    const blocks = 64;
    await Promise.all(conns.map(async (c, k) => {
      const cookies: bigint[] = [];
      for (let i = 0; i < blocks; i++) {
        cookies.push(await c.request({ type: CMD.WRITE, offset: (i * 4 + k) * 65536 * 3, payload: Buffer.alloc(65536, 0x10 + k), wait: false }));
      }
      for (const cookie of cookies) assert.equal((await c.collect(cookie)).error, 0);
    }));
    // Every connection sees every other's writes.
    for (const [j, c] of conns.entries()) {
      for (let k = 0; k < 4; k++) {
        const r = await c.read(((j * 7 % blocks) * 4 + k) * 65536 * 3, 65536);
        assert.ok(r.data!.every((b) => b === 0x10 + k), `connection ${j} reads connection ${k}'s write`);
      }
    }
    assert.equal((await conns[0]!.flush()).error, 0);
    const killed = await server.stop('SIGKILL');
    assert.equal(killed.signal, 'SIGKILL');
    // QEMU opens the image read-write (repairing a set NEED_CHECK as it does) and must find every block.
    const reads = [];
    for (let i = 0; i < blocks; i++) for (let k = 0; k < 4; k++) reads.push('-c', `read -q -P ${0x10 + k} ${(i * 4 + k) * 65536 * 3} 64k`);
    await toolOk('every acknowledged write, after FLUSH on one connection and SIGKILL', qemuIo(['-f', 'qed', ...reads, path]));
    await toolOk('check', qemuImg(['check', '-f', 'qed', path]));
  });

  it('a FUA write is durable when acknowledged: SIGKILL right after its reply loses nothing', async (t) => {
    const dir = await nbdScratch(t);
    const path = await image(dir);
    const server = await startQedServe(t, { files: [path], listen: 'tcp', dir, flags: ['-t', '-e', '2'] });
    const c = await connect(server);
    t.after(() => c.destroy());
    const go = await c.negotiate();
    assert.ok(go.flags! & TX.SEND_FUA);
    for (let i = 0; i < 8; i++) assert.equal((await c.write(i * 5 * MiB, Buffer.alloc(4096, 0x80 + i), CMD_FLAG.FUA)).error, 0);
    assert.equal((await c.writeZeroes(40 * MiB, MiB, CMD_FLAG.FUA | CMD_FLAG.NO_HOLE)).error, 0);
    await server.stop('SIGKILL');
    const reads = Array.from({ length: 8 }, (_, i) => ['-c', `read -q -P ${0x80 + i} ${i * 5 * MiB} 4k`]).flat();
    await toolOk('FUA writes after SIGKILL', qemuIo(['-f', 'qed', ...reads, '-c', 'read -q -P 0 40M 1M', path]));
  });

  it('64 requests in flight on one connection, mixed reads and writes over the same blocks, each answered with the right data', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQedServe(t, { files: [await image(dir)], listen: 'unix', dir, flags: ['-t'] });
    const c = await connect(server);
    t.after(() => c.destroy());
    await c.negotiate();
    for (let i = 0; i < 32; i++) assert.equal((await c.write(i * MiB, Buffer.alloc(65536, i + 1))).error, 0);
    const pending: Array<{ cookie: bigint; expect: number | null }> = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 16; i++) {
        const block = (round * 16 + i) % 32;
        if (i % 4 === 0) pending.push({ cookie: await c.request({ type: CMD.WRITE, offset: 40 * MiB + block * 65536, payload: Buffer.alloc(65536, 0xa0), wait: false }), expect: null });
        else pending.push({ cookie: await c.request({ type: CMD.READ, offset: block * MiB, length: 65536, wait: false }), expect: block + 1 });
      }
    }
    for (const p of pending.reverse()) {
      const r = await c.collect(p.cookie);
      assert.equal(r.error, 0);
      assert.deepEqual(r.violations, []);
      if (p.expect !== null) assert.ok(r.data!.every((b) => b === p.expect), `read of block ${p.expect - 1}`);
    }
    assert.equal(await c.disconnect(), true);
  });

  it('--quiet prints nothing and --pid-file holds the pid; -p without -b listens on 127.0.0.1 and says so', async (t) => {
    const dir = await nbdScratch(t);
    const path = await image(dir);
    const quiet = await startQedServe(t, { files: [path], listen: 'unix', dir, flags: ['-t', '-r', '--quiet'] });
    assert.equal((await nbdinfoJson(quiet.uri(), ['--no-content'])).exports[0]!['export-size'], 64 * MiB);
    const pidFile = (await readdir(dir)).find((f) => f.endsWith('.pid'))!;
    assert.equal(Number((await readFile(join(dir, pidFile), 'utf8')).trim()), quiet.pid);
    await quiet.stop();
    assert.equal(quiet.stderr(), '', '--quiet');

    const tcp = await startServer(t, {
      program: process.execPath, listen: 'tcp', dir, ready: /listening on/,
      args: (ep) => [QED_CLI, 'serve', '-t', '-r', '-p', String((ep as { port: number }).port), path],
    });
    assert.match(tcp.stderr(), new RegExp(`^qed serve: listening on 127\\.0\\.0\\.1:${(tcp.endpoint as { port: number }).port}\\n$`));
    assert.equal((await nbdinfoJson(tcp.uri(), ['--no-content'])).exports[0]!['export-size'], 64 * MiB);
  });
});
