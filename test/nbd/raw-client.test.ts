// The raw NBD client (test/support/nbd-raw-client.ts) proven against qemu-nbd before it is
// used to judge our server: handshake steps, LIST/INFO/GO, structured and simple replies,
// block status, pipelined requests answered in any order, writes that qemu-io then reads
// back from the image file, and reads that time out instead of hanging.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  CMD, CMD_FLAG, INFO, NBD_ERR, NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES, NBD_STATE_HOLE, NBD_STATE_ZERO,
  NBDMAGIC, IHAVEOPT, NbdEofError, NbdRawClient, NbdTimeoutError, OPT, REP, TX, extentsFrom,
} from '../support/nbd-raw-client.js';
import { nbdScratch, qemuImg, qemuIo, startQemuNbd, toolOk, type Server } from '../support/nbd-tools.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

async function image(dir: string): Promise<string> {
  const path = join(dir, 'disk.qed');
  await toolOk('qemu-img create', qemuImg(['create', '-q', '-f', 'qed', '-o', 'cluster_size=64k', path, String(SIZE)]));
  // 1 MiB of 0x5a at 0, 64 KiB of 0x11 at 4 MiB; the rest unallocated.
  await toolOk('qemu-io', qemuIo(['-f', 'qed', '-c', 'write -P 0x5a 0 1M', '-c', 'write -P 0x11 4M 64k', path]));
  return path;
}

const connect = (s: Server, opts?: { timeoutMs?: number }): Promise<NbdRawClient> =>
  s.endpoint.kind === 'unix' ? NbdRawClient.unix(s.endpoint.path, opts) : NbdRawClient.tcp(s.endpoint.port, s.endpoint.host, opts);

describe('raw NBD client against qemu-nbd', { concurrency: 2 }, () => {
  for (const listen of ['unix', 'tcp'] as const) {
    it(`handshake over ${listen}: greeting magic and flags, LIST, INFO with block sizes, GO with size and flags`, async (t) => {
      const dir = await nbdScratch(t);
      const server = await startQemuNbd(t, { image: await image(dir), listen, dir, flags: ['-t', '-e', '4', '-x', 'disk', '-D', 'a test disk'] });
      const c = await connect(server);
      t.after(() => c.destroy());
      const g = await c.readGreeting();
      assert.equal(g.magic, NBDMAGIC);
      assert.equal(g.optionMagic, IHAVEOPT);
      assert.equal(g.raw.length, 18);
      assert.equal(g.handshakeFlags & (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
      await c.sendClientFlags(3);

      const list = await c.list();
      assert.equal(list.final, REP.ACK);
      assert.deepEqual(list.exports.map((e) => e.name), ['disk']);

      const unknown = await c.info('no-such-export');
      assert.equal(unknown.final, REP.ERR_UNKNOWN);

      const info = await c.info('disk', [INFO.BLOCK_SIZE, INFO.DESCRIPTION]);
      assert.equal(info.final, REP.ACK);
      assert.equal(info.size, BigInt(SIZE));
      assert.equal(info.description, 'a test disk');
      assert.ok(info.blockSize && info.blockSize.minimum >= 1 && info.blockSize.maximum >= info.blockSize.preferred);

      const unsupported = await c.option(0x7fff);
      assert.equal(unsupported[0]!.type, REP.ERR_UNSUP);
      assert.equal(unsupported[0]!.option, 0x7fff);

      assert.equal(await c.structuredReply(), REP.ACK);
      const meta = await c.setMetaContext('disk', ['base:allocation', 'qemu:allocation-depth']);
      assert.equal(meta.final, REP.ACK);
      assert.ok(meta.contexts.has('base:allocation'));

      const go = await c.go('disk');
      assert.equal(go.final, REP.ACK);
      assert.equal(go.size, BigInt(SIZE));
      assert.ok(go.flags! & TX.HAS_FLAGS);
      assert.ok(go.flags! & TX.SEND_FLUSH);
      assert.ok(go.flags! & TX.SEND_DF);
      assert.equal(go.flags! & TX.READ_ONLY, 0);
      assert.equal(await c.disconnect(), true);
    });
  }

  it('read, write, flush and block status round trip; qemu-io reads the writes back from the file', async (t) => {
    const dir = await nbdScratch(t);
    const path = await image(dir);
    const server = await startQemuNbd(t, { image: path, listen: 'unix', dir });
    const c = await connect(server);
    t.after(() => c.destroy());
    await c.negotiate({ contexts: ['base:allocation'] });
    const ctx = c.contexts.get('base:allocation')!;

    // Structured read over data then a hole: the content must cover every byte, and match.
    const r = await c.read(1 * MiB - 4096, 8192);
    assert.deepEqual(r.violations, []);
    assert.equal(r.error, 0);
    assert.equal(r.covered, 8192);
    assert.ok(r.data!.subarray(0, 4096).every((b) => b === 0x5a));
    assert.ok(r.data!.subarray(4096).every((b) => b === 0));

    // Block status: data at 0 (neither hole nor zero), a hole after 1 MiB.
    const bs = await c.blockStatus(0, 2 * MiB);
    assert.deepEqual(bs.violations, []);
    const ext = extentsFrom(0, bs.extents.get(ctx)!);
    assert.equal(ext[0]!.offset, 0);
    assert.equal(ext[0]!.length, MiB);
    assert.equal(ext[0]!.flags & (NBD_STATE_HOLE | NBD_STATE_ZERO), 0);
    assert.equal(ext[1]!.flags & NBD_STATE_HOLE, NBD_STATE_HOLE);
    const one = await c.blockStatus(0, 2 * MiB, CMD_FLAG.REQ_ONE);
    assert.deepEqual(one.violations, []);
    assert.equal(one.extents.get(ctx)!.length, 1);

    // Writes (one with FUA), a flush, read back over NBD.
    const data = Buffer.alloc(128 * 1024, 0xc3);
    assert.equal((await c.write(8 * MiB, data)).error, 0);
    assert.equal((await c.write(9 * MiB, Buffer.alloc(4096, 0x77), CMD_FLAG.FUA)).error, 0);
    assert.equal((await c.writeZeroes(0, 4096)).error, 0);
    assert.equal((await c.flush()).error, 0);
    const back = await c.read(8 * MiB, data.length, CMD_FLAG.DF);
    assert.deepEqual(back.violations, []);
    assert.ok(back.data!.equals(data));

    // Out of range: qemu-nbd answers EINVAL (the document asks ENOSPC for writes; our server must).
    const past = await c.read(SIZE - 512, 1024);
    assert.equal(past.error, NBD_ERR.EINVAL);
    assert.deepEqual(past.violations, []);
    assert.equal(await c.disconnect(), true);
    await server.stop();

    await toolOk('qemu-io read back', qemuIo(['-f', 'qed', '-r',
      '-c', 'read -P 0 0 4k', '-c', 'read -P 0x5a 4k 1020k', '-c', 'read -P 0xc3 8M 128k', '-c', 'read -P 0x77 9M 4k', '-c', 'read -P 0x11 4M 64k', path]));
    await toolOk('qemu-img check', qemuImg(['check', '-f', 'qed', path]));
  });

  it('simple replies when structured replies are not negotiated; EXPORT_NAME with and without zeroes', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQemuNbd(t, { image: await image(dir), listen: 'unix', dir });
    const c = await connect(server);
    t.after(() => c.destroy());
    await c.start();
    const e = await c.exportName('', true);
    assert.equal(e.size, BigInt(SIZE));
    assert.equal(e.flags & TX.SEND_DF, 0, 'DF is only offered with structured replies');
    const r = await c.read(0, 4096);
    assert.equal(r.replies[0]!.kind, 'simple');
    assert.equal(r.error, 0);
    assert.ok(r.data!.every((b) => b === 0x5a));
    const w = await c.write(0, Buffer.alloc(512, 1));
    assert.equal(w.replies[0]!.kind, 'simple');
    assert.equal(await c.disconnect(), true);

    const c2 = await connect(server);
    t.after(() => c2.destroy());
    await c2.start(1); // fixed newstyle, no NO_ZEROES: 124 zero bytes follow
    const e2 = await c2.exportName('', false);
    assert.equal(e2.size, BigInt(SIZE));
    assert.equal(await c2.disconnect(), true);
  });

  it('pipelined requests are matched to their replies by cookie, whatever the order', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQemuNbd(t, { image: await image(dir), listen: 'tcp', dir });
    const c = await connect(server);
    t.after(() => c.destroy());
    await c.negotiate();
    const cookies: Array<{ cookie: bigint; offset: number }> = [];
    for (let i = 0; i < 64; i++) {
      const offset = 16 * MiB + i * 4096;
      cookies.push({ cookie: await c.request({ type: CMD.WRITE, offset, payload: Buffer.alloc(4096, i) }), offset });
    }
    for (const { cookie } of cookies.slice().reverse()) assert.equal((await c.collect(cookie)).error, 0);
    const reads = [];
    for (const { offset } of cookies) reads.push(await c.request({ type: CMD.READ, offset, length: 4096 }));
    for (let i = reads.length - 1; i >= 0; i--) {
      const r = await c.collect(reads[i]!);
      assert.deepEqual(r.violations, []);
      assert.ok(r.data!.every((b) => b === i), `read ${i}`);
    }
    assert.equal(await c.disconnect(), true);
  });

  it('a read the server never answers times out; a closed connection is an EOF error; option framing is exposed raw', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQemuNbd(t, { image: await image(dir), listen: 'unix', dir });
    const c = await connect(server, { timeoutMs: 300 });
    t.after(() => c.destroy());
    await c.readGreeting();
    // No client flags sent: the server waits, and so would a naive client, forever.
    await assert.rejects(c.readOptionReply(), NbdTimeoutError);
    await c.sendClientFlags(1);
    // STARTTLS on a server without TLS: an error reply, not an ACK.
    const tls = await c.option(OPT.STARTTLS);
    assert.ok(tls[0]!.type & 0x80000000, `STARTTLS answered ${tls[0]!.type}`);
    // A bad option magic: qemu-nbd drops the connection.
    await c.sendOption(OPT.LIST, Buffer.alloc(0), { magic: 0x1234n });
    await assert.rejects(c.readOptionReply(), NbdEofError);
    assert.equal(await c.closedByServer(2000), true);
  });
});
