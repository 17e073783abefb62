// Hostile NBD clients against `qed serve` (the NBD list of ../shared/docs/reliability.md), over
// a raw socket with the independent client of test/support/nbd-raw-client.ts: each case is
// answered as the protocol document says, the server's memory stays bounded, and afterwards
// a well-behaved second client is still served the right data.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import {
  CMD, CMD_FLAG, INFO, NBD_ERR, NbdEofError, NbdRawClient, NbdTimeoutError, OPT, REP,
  infoRequestData, lengthPrefixed, metaContextData, nameOfError, optionBytes, u32be, type CommandResult,
} from '../support/nbd-raw-client.js';
import { nbdScratch, nbdsh, qemuImg, qemuIo, startQedServe, toolOk, type Server } from '../support/nbd-tools.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SIZE = 8 * GiB;

/** An 8 GiB QED image (sparse) with 0x61 in [0, 2 MiB) and 0x62 in [5 GiB, 5 GiB + 1 MiB). */
async function image(dir: string): Promise<string> {
  const path = join(dir, 'big.qed');
  await toolOk('create', qemuImg(['create', '-q', '-f', 'qed', path, String(SIZE)]));
  await toolOk('write', qemuIo(['-f', 'qed', '-c', 'write -P 0x61 0 2M', '-c', 'write -P 0x62 5G 1M', path]));
  return path;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

const connect = (s: Server, opts?: { timeoutMs?: number; maxBuffered?: number }): Promise<NbdRawClient> =>
  s.endpoint.kind === 'unix' ? NbdRawClient.unix(s.endpoint.path, opts) : NbdRawClient.tcp(s.endpoint.port, s.endpoint.host, opts);

/** The 8 GiB image served by a fresh `qed serve` in a scratch directory of the test. */
async function serveImage(t: TestContext, listen: 'unix' | 'tcp', flags: string[]): Promise<Server> {
  const dir = await nbdScratch(t);
  return startQedServe(t, { files: [await image(dir)], listen, dir, flags });
}

/** A raw client of `server`, destroyed when the test ends. */
async function connected(t: TestContext, server: Server): Promise<NbdRawClient> {
  const c = await connect(server);
  t.after(() => c.destroy());
  return c;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A fresh, well-behaved client: negotiates, reads known data, checks it, disconnects. */
async function assertStillServing(server: Server, what: string): Promise<void> {
  const c = await connect(server);
  try {
    await c.negotiate({ contexts: ['base:allocation'] });
    const r = await c.read(2 * MiB - 4096, 8192);
    assert.deepEqual(r.violations, [], `${what}: a second client's read`);
    assert.equal(r.error, 0);
    assert.ok(r.data!.subarray(0, 4096).every((b) => b === 0x61) && r.data!.subarray(4096).every((b) => b === 0), `${what}: data`);
    assert.equal(await c.disconnect(), true);
  } finally {
    c.destroy();
  }
}

/** The answer to a request: the expected error, no protocol violation. */
function assertError(r: CommandResult, expected: number | number[], what: string): void {
  const allowed = Array.isArray(expected) ? expected : [expected];
  assert.ok(allowed.includes(r.error), `${what}: got ${nameOfError(r.error)}, expected ${allowed.map(nameOfError).join(' or ')} (${r.messages.join('; ')})`);
  assert.deepEqual(r.violations, [], what);
  for (const m of r.messages) assert.ok(Buffer.byteLength(m) <= 4096, `${what}: message of ${Buffer.byteLength(m)} bytes`);
}

/** Expect the server to end the connection soon (a hard disconnect), reading anything it sends first. */
async function assertClosed(c: NbdRawClient, what: string, ms = 3000): Promise<void> {
  assert.equal(await c.closedByServer(ms), true, `${what}: the server should close the connection`);
  c.destroy();
}

/** nbdsh lines defining err(f): "OK", or the errno name libnbd raised for the call f. */
const NBDSH_ERRNO_OF = [
  'def err(f):',
  '    try:',
  '        f()',
  '        return "OK"',
  '    except nbd.Error as e:',
  '        return errno.errorcode.get(e.errno, str(e.errno))',
];

describe('hostile NBD clients against qed serve', { concurrency: 2 }, () => {
  it('EOF at every byte of the handshake, unknown client flags, a bad option magic: each connection dropped, the server keeps serving', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQedServe(t, { files: [await image(dir)], listen: 'unix', dir, flags: ['-t', '-e', '4'] });
    const stream = Buffer.concat([
      u32be(3),
      optionBytes(OPT.STRUCTURED_REPLY),
      optionBytes(OPT.SET_META_CONTEXT, metaContextData('', ['base:allocation', 'qemu:allocation-depth'])),
      optionBytes(OPT.GO, infoRequestData('', [INFO.BLOCK_SIZE])),
    ]);
    for (let k = 0; k < stream.length; k++) {
      const c = await connect(server, { timeoutMs: 3000 });
      if (k > 0) {
        await c.readGreeting();
        await c.send(stream.subarray(0, k));
      }
      c.destroy();
    }
    // And after the handshake, EOF in the middle of a request header.
    for (const k of [1, 4, 12, 27]) {
      const c = await connect(server);
      await c.negotiate();
      await c.send(Buffer.alloc(k, 0x25));
      c.destroy();
    }
    const flags = await connect(server);
    await flags.readGreeting();
    await flags.sendClientFlags(0xfffffffc | 1);
    await assertClosed(flags, 'unknown client flags');

    const magic = await connect(server);
    await magic.start();
    await magic.sendOption(OPT.LIST, Buffer.alloc(0), { magic: 0x49484156454f5055n });
    await assertClosed(magic, 'a bad option magic');
    await assertStillServing(server, 'after handshake EOFs');
  });

  it('option lengths that do not fit the option, names and queries past their option or over 4096 bytes: NBD_REP_ERR_INVALID (or TOO_BIG), and the session goes on', async (t) => {
    const server = await serveImage(t, 'tcp', ['-t', '-e', '4']);
    const c = await connected(t, server);
    await c.start();
    const final = async (option: number, data: Buffer): Promise<{ type: number; message: string }> => {
      const replies = await c.option(option, data);
      const last = replies[replies.length - 1]!;
      assert.equal(last.option, option);
      return { type: last.type, message: last.data.toString('utf8') };
    };
    const invalid = [REP.ERR_INVALID];
    const invalidOrBig = [REP.ERR_INVALID, REP.ERR_TOO_BIG];
    const cases: Array<[string, number, Buffer, number[]]> = [
      ['LIST with data', OPT.LIST, Buffer.from('x'), invalid],
      ['STRUCTURED_REPLY with data', OPT.STRUCTURED_REPLY, Buffer.alloc(4), invalid],
      ['GO with no data', OPT.GO, Buffer.alloc(0), invalid],
      ['INFO with 5 bytes', OPT.INFO, Buffer.alloc(5), invalid],
      ['INFO whose name length runs past the option', OPT.INFO, Buffer.concat([u32be(100), Buffer.from('ab'), Buffer.alloc(2)]), invalid],
      ['INFO whose request count runs past the option', OPT.INFO, Buffer.concat([lengthPrefixed(''), Buffer.from([0, 9]), Buffer.alloc(2)]), invalid],
      ['INFO with a 5000-byte name', OPT.INFO, infoRequestData('n'.repeat(5000)), invalidOrBig],
      ['GO with a 4097-byte name', OPT.GO, infoRequestData('n'.repeat(4097)), invalidOrBig],
      ['SET_META_CONTEXT before STRUCTURED_REPLY', OPT.SET_META_CONTEXT, metaContextData('', ['base:allocation']), invalid],
      ['LIST_META_CONTEXT with a name past the option', OPT.LIST_META_CONTEXT, Buffer.concat([u32be(64), Buffer.from('abc')]), invalid],
    ];
    for (const [what, option, data, expected] of cases) {
      const r = await final(option, data);
      assert.ok(expected.includes(r.type), `${what}: got 0x${r.type.toString(16)} ${r.message}`);
      assert.ok(Buffer.byteLength(r.message) <= 1024, `${what}: the error message echoes ${Buffer.byteLength(r.message)} bytes`);
    }
    assert.equal(await c.structuredReply(), REP.ACK);
    const metaCases: Array<[string, Buffer, number[]]> = [
      ['a query length past the option', Buffer.concat([lengthPrefixed(''), u32be(1), u32be(50), Buffer.from('base:')]), invalid],
      ['a 5000-byte query', metaContextData('', ['base:' + 'q'.repeat(4995)]), invalidOrBig],
      ['a query count of 2^32-1', Buffer.concat([lengthPrefixed(''), u32be(0xffffffff)]), invalidOrBig],
      ['a name past the option', Buffer.concat([u32be(1000), Buffer.from('x')]), invalid],
    ];
    for (const [what, data, expected] of metaCases) {
      const r = await final(OPT.SET_META_CONTEXT, data);
      assert.ok(expected.includes(r.type), `SET_META_CONTEXT with ${what}: got 0x${r.type.toString(16)} ${r.message}`);
    }
    const unknownName = await c.info('u'.repeat(4000));
    assert.equal(unknownName.final, REP.ERR_UNKNOWN);
    assert.ok(unknownName.finalData.length <= 1024, `an unknown 4000-byte name is echoed in ${unknownName.finalData.length} bytes`);
    // After all those errors the session still works: contexts, GO, a read.
    const meta = await c.setMetaContext('', ['base:allocation']);
    assert.equal(meta.final, REP.ACK);
    assert.equal((await c.go('')).final, REP.ACK);
    const r = await c.read(0, 4096);
    assert.ok(r.data!.every((b) => b === 0x61));
    assert.equal(await c.disconnect(), true);
  });

  it('an option declaring 0xffffffff bytes is refused or dropped promptly, never buffered; an unknown one streamed 16 MiB of junk stays bounded', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQedServe(t, { files: [await image(dir)], listen: 'unix', dir, flags: ['-t', '-e', '8'] });
    const before = rssMiB(server.pid);
    for (const option of [OPT.INFO, OPT.GO, OPT.SET_META_CONTEXT, OPT.LIST_META_CONTEXT]) {
      const c = await connect(server, { timeoutMs: 3000 });
      await c.start();
      await c.sendOption(option, Buffer.alloc(64), { length: 0xffffffff });
      try {
        const reply = await c.readOptionReply();
        assert.ok(reply.type >= 0x80000000, `option ${option} declaring 4 GiB: answered 0x${reply.type.toString(16)}`);
      } catch (e) {
        assert.ok(e instanceof NbdEofError, `option ${option} declaring 4 GiB: neither refused nor dropped within 3 s (${String(e)})`);
      }
      c.destroy();
    }
    const junk = await connect(server, { timeoutMs: 3000 });
    await junk.start();
    await junk.sendOption(0x7777, Buffer.alloc(0), { length: 0xffffffff });
    try { for (let i = 0; i < 16; i++) await junk.send(Buffer.alloc(MiB, 0x41), 3000); } catch { /* dropped: fine */ }
    await sleep(200);
    assert.ok(rssMiB(server.pid) - before < 64, `RSS grew from ${before.toFixed(0)} to ${rssMiB(server.pid).toFixed(0)} MiB`);
    junk.destroy();
    await assertStillServing(server, 'after 4 GiB options');
  });

  it('options out of order: BLOCK_STATUS without contexts, STARTTLS without TLS, an option after GO; ABORT is acknowledged', async (t) => {
    const server = await serveImage(t, 'unix', ['-t', '-e', '4']);
    const c = await connected(t, server);
    await c.start();
    const tls = await c.option(OPT.STARTTLS);
    assert.ok([REP.ERR_POLICY, REP.ERR_UNSUP].includes(tls[0]!.type as never), `STARTTLS without TLS: 0x${tls[0]!.type.toString(16)}`);
    assert.ok((await c.option(OPT.STARTTLS, Buffer.from('x')))[0]!.type >= 0x80000000, 'STARTTLS with data: an error');
    await c.structuredReply();
    assert.equal((await c.go('')).final, REP.ACK);
    const bs = await c.blockStatus(0, 4096);
    assertError(bs, NBD_ERR.EINVAL, 'BLOCK_STATUS without SET_META_CONTEXT');
    // A whole option (over 28 bytes) after GO is a request with a bad magic: hard disconnect.
    await c.send(optionBytes(OPT.INFO, infoRequestData('', [INFO.BLOCK_SIZE, INFO.NAME, INFO.DESCRIPTION, INFO.EXPORT])));
    await assertClosed(c, 'an option after GO');

    const a = await connect(server);
    t.after(() => a.destroy());
    await a.start();
    const ack = await a.abort();
    assert.ok(ack === null || ack.type === REP.ACK, 'ABORT answered ACK or the connection closed');
    await assertClosed(a, 'after ABORT');
    await assertStillServing(server, 'after out-of-order options');
  });

  it('requests: bad magic closes; unknown commands, unknown flags and flags on the wrong command are EINVAL; the connection goes on', async (t) => {
    const server = await serveImage(t, 'unix', ['-t', '-e', '4']);
    const c = await connected(t, server);
    await c.negotiate({ contexts: ['base:allocation'] });
    const cases: Array<[string, { type: number; flags: number; offset?: number; length?: number; payload?: Buffer }]> = [
      ['unknown command 99', { type: 99, flags: 0, length: 512 }],
      ['NBD_CMD_RESIZE (not negotiated)', { type: CMD.RESIZE, flags: 0, offset: 0, length: 0 }],
      ['unknown flag bit 9 on READ', { type: CMD.READ, flags: 1 << 9, length: 512 }],
      ['unknown flag bit 15 on FLUSH', { type: CMD.FLUSH, flags: 1 << 15 }],
      ['DF on WRITE', { type: CMD.WRITE, flags: CMD_FLAG.DF, length: 512, payload: Buffer.alloc(512) }],
      ['REQ_ONE on READ', { type: CMD.READ, flags: CMD_FLAG.REQ_ONE, length: 512 }],
      ['NO_HOLE on TRIM', { type: CMD.TRIM, flags: CMD_FLAG.NO_HOLE, length: 512 }],
      ['NO_HOLE on READ', { type: CMD.READ, flags: CMD_FLAG.NO_HOLE, length: 512 }],
      ['FAST_ZERO on WRITE', { type: CMD.WRITE, flags: CMD_FLAG.FAST_ZERO, length: 512, payload: Buffer.alloc(512) }],
      ['DF on BLOCK_STATUS', { type: CMD.BLOCK_STATUS, flags: CMD_FLAG.DF, length: 512 }],
      ['REQ_ONE on CACHE', { type: CMD.CACHE, flags: CMD_FLAG.REQ_ONE, length: 512 }],
    ];
    for (const [what, h] of cases) assertError(await c.command({ ...h, offset: h.offset ?? 0 }), NBD_ERR.EINVAL, what);
    // FUA is valid on every command once negotiated.
    assertError(await c.read(0, 512, CMD_FLAG.FUA), 0, 'FUA on READ');
    assertError(await c.flush(CMD_FLAG.FUA), 0, 'FUA on FLUSH');
    assert.ok((await c.read(0, 4096)).data!.every((b) => b === 0x61), 'the rejected WRITEs wrote nothing');
    await c.request({ type: CMD.READ, magic: 0x25609514, length: 512 });
    await assertClosed(c, 'a bad request magic');
    await assertStillServing(server, 'after bad requests');
  });

  it('ranges: past the end READ/TRIM/CACHE/BLOCK_STATUS are EINVAL and WRITE/WRITE_ZEROES ENOSPC; offset + length over 2^64 too; zero-length requests are answered cleanly', async (t) => {
    const server = await serveImage(t, 'unix', ['-t']);
    const c = await connected(t, server);
    await c.negotiate({ contexts: ['base:allocation'] });
    const end = BigInt(SIZE);
    assertError(await c.read(end - 512n, 1024), NBD_ERR.EINVAL, 'READ past the end');
    assertError(await c.read(end, 1), NBD_ERR.EINVAL, 'READ at the end');
    assertError(await c.trim(end - 512n, 1024), NBD_ERR.EINVAL, 'TRIM past the end');
    assertError(await c.cache(end - 512n, 1024), NBD_ERR.EINVAL, 'CACHE past the end');
    assertError(await c.blockStatus(end, 512), NBD_ERR.EINVAL, 'BLOCK_STATUS at the end');
    assertError(await c.write(end - 512n, Buffer.alloc(1024, 1)), NBD_ERR.ENOSPC, 'WRITE past the end');
    assertError(await c.writeZeroes(end - 512n, 1024), NBD_ERR.ENOSPC, 'WRITE_ZEROES past the end');
    const wrap = 0xfffffffffffffe00n;
    assertError(await c.read(wrap, 1024), NBD_ERR.EINVAL, 'READ wrapping 2^64');
    assertError(await c.trim(wrap, 1024), NBD_ERR.EINVAL, 'TRIM wrapping 2^64');
    assertError(await c.blockStatus(wrap, 1024), NBD_ERR.EINVAL, 'BLOCK_STATUS wrapping 2^64');
    assertError(await c.write(wrap, Buffer.alloc(1024, 1)), [NBD_ERR.ENOSPC, NBD_ERR.EINVAL], 'WRITE wrapping 2^64');
    assertError(await c.writeZeroes(wrap, 1024), [NBD_ERR.ENOSPC, NBD_ERR.EINVAL], 'WRITE_ZEROES wrapping 2^64');
    assertError(await c.read(0, 33 * MiB), [NBD_ERR.EINVAL, NBD_ERR.EOVERFLOW], 'READ over the 32 MiB maximum');
    // Zero-length requests: the behaviour is unspecified, but the answer must be well formed and the connection stay up.
    for (const [what, r] of [
      ['READ of 0 bytes', await c.read(4096, 0)],
      ['WRITE of 0 bytes', await c.write(4096, Buffer.alloc(0))],
      ['TRIM of 0 bytes', await c.trim(4096, 0)],
      ['WRITE_ZEROES of 0 bytes', await c.writeZeroes(4096, 0)],
      ['BLOCK_STATUS of 0 bytes', await c.blockStatus(4096, 0)],
    ] as const) {
      assert.deepEqual(r.violations, [], what);
      assert.ok(r.error === 0 || r.error === NBD_ERR.EINVAL, `${what}: ${nameOfError(r.error)}`);
    }
    assert.ok((await c.read(end - 4096n, 4096)).data!.every((b) => b === 0), 'the end of the export reads back as zeroes');
    assert.equal(await c.disconnect(), true);
    await assertStillServing(server, 'after range errors');
  });

  it('a read-only export answers WRITE, TRIM and WRITE_ZEROES with EPERM; reads still work', async (t) => {
    const server = await serveImage(t, 'tcp', ['-t', '-r']);
    const c = await connected(t, server);
    const go = await c.negotiate();
    assert.ok(go.flags! & 2, 'NBD_FLAG_READ_ONLY');
    assertError(await c.write(0, Buffer.alloc(4096, 9)), NBD_ERR.EPERM, 'WRITE on a read-only export');
    assertError(await c.write(0, Buffer.alloc(4096, 9), CMD_FLAG.FUA), NBD_ERR.EPERM, 'WRITE+FUA on a read-only export');
    assertError(await c.trim(0, 4096), NBD_ERR.EPERM, 'TRIM on a read-only export');
    assertError(await c.writeZeroes(0, 4096), NBD_ERR.EPERM, 'WRITE_ZEROES on a read-only export');
    assertError(await c.write(BigInt(SIZE), Buffer.alloc(512)), [NBD_ERR.EPERM, NBD_ERR.ENOSPC], 'WRITE past the end of a read-only export');
    assert.ok((await c.read(0, 4096)).data!.every((b) => b === 0x61));
    assert.equal((await c.flush()).error, 0, 'FLUSH on a read-only export is harmless');
    assert.equal(await c.disconnect(), true);
    await assertStillServing(server, 'after writes to a read-only export');
  });

  it('BLOCK_STATUS of length 0xffffffff on an 8 GiB export: one chunk per context, at most 2^20 extents, lengths within the rules; REQ_ONE gives one extent', async (t) => {
    const server = await serveImage(t, 'unix', ['-t', '-r']);
    const c = await connected(t, server);
    await c.negotiate({ contexts: ['base:allocation', 'qemu:allocation-depth'] });
    for (const offset of [0, 4 * GiB, 5 * GiB - 4096, SIZE - 0xffffffff]) {
      for (const flags of [0, CMD_FLAG.REQ_ONE]) {
        const r = await c.blockStatus(offset, 0xffffffff, flags);
        assertError(r, 0, `BLOCK_STATUS at ${offset} flags ${flags}`);
        assert.deepEqual([...r.extents.keys()].sort(), [...c.contexts.values()].sort(), 'one chunk per context');
        for (const [, list] of r.extents) {
          assert.ok(list.length <= 1 << 20);
          if (flags) assert.equal(list.length, 1);
          const total = list.reduce((a, e) => a + e.length, 0);
          assert.ok(offset + Math.min(total, 0xffffffff) <= SIZE, 'extents stay inside the export');
        }
      }
    }
    // What it says at 5 GiB: data (flags 0), then a hole.
    const at = await c.blockStatus(5 * GiB, 0xffffffff);
    const base = at.extents.get(c.contexts.get('base:allocation')!)!;
    assert.equal(base[0]!.flags, 0);
    assert.equal(base[0]!.length, MiB);
    assert.equal(base[1]!.flags & 1, 1);
    assert.equal(await c.disconnect(), true);
  });

  it('a WRITE claiming 4 GiB of payload, and one over the 32 MiB maximum, are refused without buffering; nothing is written', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQedServe(t, { files: [await image(dir)], listen: 'unix', dir, flags: ['-t', '-e', '4'] });
    const before = rssMiB(server.pid);
    const c = await connect(server, { timeoutMs: 2000 });
    await c.negotiate();
    await c.request({ type: CMD.WRITE, offset: 0, length: 0xffffffff, wait: false });
    try { for (let i = 0; i < 24; i++) await c.send(Buffer.alloc(MiB, 0xee), 2000); } catch { /* dropped: fine */ }
    await sleep(300);
    const grown = rssMiB(server.pid) - before;
    assert.ok(grown < 48, `RSS grew by ${grown.toFixed(0)} MiB while a client streamed 24 MiB of a 4 GiB WRITE`);
    // Whatever the server did (an error reply, a hard disconnect, or discarding), nothing reached the image.
    if (c.buffered > 0 || !c.eof) {
      try {
        const reply = await c.readReply();
        assert.ok(reply.kind === 'chunk' ? (reply.type & 0x8000) !== 0 : reply.error !== 0, 'an error, if a reply at all');
      } catch (e) {
        assert.ok(e instanceof NbdEofError || e instanceof NbdTimeoutError, String(e));
      }
    }
    c.destroy();

    const big = await connect(server, { timeoutMs: 5000 });
    t.after(() => big.destroy());
    await big.negotiate();
    const cookie = await big.request({ type: CMD.WRITE, offset: 0, length: 33 * MiB, payload: Buffer.alloc(33 * MiB, 0xdd) });
    try {
      const r = await big.collect(cookie);
      assertError(r, [NBD_ERR.EINVAL, NBD_ERR.EOVERFLOW, NBD_ERR.ENOMEM], 'a 33 MiB WRITE');
      // If the server skipped the payload and kept the connection, it is still in step.
      assert.ok((await big.read(0, 4096)).data!.every((b) => b === 0x61));
    } catch (e) {
      assert.ok(e instanceof NbdEofError, `a 33 MiB WRITE: ${String(e)}`);
    }
    await assertStillServing(server, 'after oversized WRITEs');
  });

  it('a client vanishing mid-payload, or with 5000 requests in flight, harms neither the image nor the next client', async (t) => {
    const dir = await nbdScratch(t);
    const path = await image(dir);
    const server = await startQedServe(t, { files: [path], listen: 'unix', dir, flags: ['-t', '-e', '4'] });
    const before = rssMiB(server.pid);
    for (const sent of [0, 1, 4095, 4096, MiB - 1]) {
      const c = await connect(server);
      await c.negotiate();
      await c.request({ type: CMD.WRITE, offset: 0, length: MiB, payload: Buffer.alloc(sent, 0x77) });
      await sleep(20);
      c.destroy();
    }
    const many = await connect(server);
    await many.negotiate();
    for (let i = 0; i < 5000; i++) {
      await many.request({ type: i % 3 === 0 ? CMD.WRITE : CMD.READ, offset: (i % 512) * 65536 + 8 * MiB, length: 65536, payload: i % 3 === 0 ? Buffer.alloc(65536, 0x33) : undefined, wait: false });
    }
    await sleep(300);
    many.destroy();
    await sleep(300);
    assert.ok(rssMiB(server.pid) - before < 256, `RSS grew by ${(rssMiB(server.pid) - before).toFixed(0)} MiB`);
    await assertStillServing(server, 'after vanishing clients');
    const c = await connect(server);
    t.after(() => c.destroy());
    await c.negotiate();
    assert.ok((await c.read(0, MiB)).data!.every((b) => b === 0x61), 'no partial WRITE landed');
    assert.equal(await c.disconnect(), true);
    const stopped = await server.stop();
    assert.equal(stopped.code, 0, server.stderr());
    await toolOk('qemu-img check', qemuImg(['check', '-f', 'qed', path]));
  });

  it('a client that never reads its replies: the server stops reading (bounded memory), then answers every request correctly', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQedServe(t, { files: [await image(dir)], listen: 'unix', dir, flags: ['-t', '-e', '4'] });
    const before = rssMiB(server.pid);
    const c = await connect(server, { timeoutMs: 20_000, maxBuffered: MiB });
    t.after(() => c.destroy());
    await c.negotiate();
    const cookies: bigint[] = [];
    for (let i = 0; i < 3000; i++) cookies.push(await c.request({ type: CMD.READ, offset: (i % 2) * MiB, length: MiB, wait: false }));
    await sleep(1500);
    const grown = rssMiB(server.pid) - before;
    assert.ok(grown < 256, `RSS grew by ${grown.toFixed(0)} MiB with 3000 MiB of replies unread`);
    // Meanwhile another client is served.
    await assertStillServing(server, 'while one client does not read');
    for (const [i, cookie] of cookies.entries()) {
      const r = await c.collect(cookie);
      assert.equal(r.error, 0);
      assert.deepEqual(r.violations, []);
      if (i < 2) assert.ok(r.data!.every((b) => b === (i === 0 ? 0x61 : 0x61)));
    }
    assert.equal(await c.disconnect(), true);
  });

  it('a client that never finishes the handshake does not block others; more clients than -e are not served until one leaves', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQedServe(t, { files: [await image(dir)], listen: 'unix', dir, flags: ['-t', '-e', '2'] });
    const staller = await connect(server);
    t.after(() => staller.destroy());
    await staller.readGreeting();
    await assertStillServing(server, 'beside a stalled handshake');
    staller.destroy();
    await sleep(100);

    const a = await connect(server); const b = await connect(server);
    t.after(() => { a.destroy(); b.destroy(); });
    await a.negotiate(); await b.negotiate();
    const third = await connect(server, { timeoutMs: 700 });
    t.after(() => third.destroy());
    let served = false;
    try {
      await third.readGreeting();
      served = true;
    } catch (e) {
      assert.ok(e instanceof NbdTimeoutError || e instanceof NbdEofError, String(e));
    }
    assert.equal(served, false, 'a third client must not be served while two are connected with -e 2');
    assert.equal(await a.disconnect(), true);
    await sleep(100);
    await assertStillServing(server, 'once a slot is free');
    assert.equal(await b.disconnect(), true);
  });

  it('nbdsh (libnbd, strict mode off) sees the protocol\'s errors: EINVAL, ENOSPC, EPERM, ENOTSUP only for FAST_ZERO, and the connection survives', async (t) => {
    const dir = await nbdScratch(t);
    const path = await image(dir);
    const rw = await startQedServe(t, { files: [path], listen: 'unix', dir, flags: ['-t', '-e', '2'] });
    const script = (uri: string): string => [
      'import errno',
      'h.set_strict_mode(0)',
      'h.add_meta_context("base:allocation")',
      `h.connect_uri(${JSON.stringify(uri)})`,
      ...NBDSH_ERRNO_OF,
      'size = h.get_size()',
      'print("read-past-end", err(lambda: h.pread(1024, size - 512)))',
      'print("write-past-end", err(lambda: h.pwrite(b"x" * 1024, size - 512)))',
      'print("zero-past-end", err(lambda: h.zero(1024, size - 512)))',
      'print("trim-past-end", err(lambda: h.trim(1024, size - 512)))',
      'print("cache-past-end", err(lambda: h.cache(1024, size - 512)))',
      'print("read-wrap", err(lambda: h.pread(1024, 2**64 - 512)))',
      'print("read-req-one", err(lambda: h.pread(512, 0, nbd.CMD_FLAG_REQ_ONE)))',
      'print("write-df", err(lambda: h.pwrite(b"y" * 512, 0, nbd.CMD_FLAG_DF)))',
      'print("read-unknown-flag", err(lambda: h.pread(512, 0, 1 << 12)))',
      'print("write", err(lambda: h.pwrite(b"z" * 4096, 3 * 2**20)))',
      'print("fast-zero-data", err(lambda: h.zero(65536, 0, nbd.CMD_FLAG_FAST_ZERO)))',
      'print("zero", err(lambda: h.zero(65536, 2**20, nbd.CMD_FLAG_NO_HOLE)))',
      'exts = []',
      'def cb(meta, off, e, errp):',
      '    exts.append(len(e) // 2)',
      '    return 0',
      'print("block-status-4g", err(lambda: h.block_status(2**32 - 1, 0, cb)), max(exts) <= 2**20)',
      'print("alive", h.pread(4096, 0)[:2].hex())',
      'h.shutdown()',
    ].join('\n');
    const r = await toolOk('nbdsh', nbdsh(script(rw.uri())));
    const got = Object.fromEntries(r.stdout.trim().split('\n').map((l) => { const [k, ...v] = l.split(' '); return [k, v.join(' ')]; }));
    assert.deepEqual(got, {
      'read-past-end': 'EINVAL', 'write-past-end': 'ENOSPC', 'zero-past-end': 'ENOSPC', 'trim-past-end': 'EINVAL',
      'cache-past-end': 'EINVAL', 'read-wrap': 'EINVAL', 'read-req-one': 'EINVAL', 'write-df': 'EINVAL', 'read-unknown-flag': 'EINVAL',
      write: 'OK', 'fast-zero-data': got['fast-zero-data'] === 'OK' ? 'OK' : 'ENOTSUP', zero: 'OK',
      'block-status-4g': 'OK True', alive: '6161',
    });
    await rw.stop();

    const ro = await startQedServe(t, { files: [path], listen: 'unix', dir, flags: ['-t', '-r'] });
    const r2 = await toolOk('nbdsh read-only', nbdsh([
      'import errno',
      'h.set_strict_mode(0)',
      `h.connect_uri(${JSON.stringify(ro.uri())})`,
      ...NBDSH_ERRNO_OF,
      'print(err(lambda: h.pwrite(b"x" * 512, 0)), err(lambda: h.trim(512, 0)), err(lambda: h.zero(512, 0)), h.pread(2, 0).hex())',
    ].join('\n')));
    assert.equal(r2.stdout.trim(), 'EPERM EPERM EPERM 6161');
  });

  it('SIGTERM with clients connected: in-flight requests answered, the server exits 0 and removes its socket; without -t it exits after the last client', async (t) => {
    const dir = await nbdScratch(t);
    const path = await image(dir);
    const server = await startQedServe(t, { files: [path], listen: 'unix', dir, flags: ['-t', '-e', '4'] });
    const idle = await connect(server);
    const busy = await connect(server);
    t.after(() => { idle.destroy(); busy.destroy(); });
    await idle.negotiate();
    await busy.negotiate();
    const cookies: bigint[] = [];
    for (let i = 0; i < 16; i++) cookies.push(await busy.request({ type: CMD.WRITE, offset: 16 * MiB + i * MiB, payload: Buffer.alloc(MiB, 0x44) }));
    const stopping = server.stop('SIGTERM', 10_000);
    const answered: number[] = [];
    for (const [i, cookie] of cookies.entries()) {
      try {
        const r = await busy.collect(cookie);
        if (r.error === 0) answered.push(i);
        else assert.equal(r.error, NBD_ERR.ESHUTDOWN, `in-flight request failed with ${nameOfError(r.error)}`);
      } catch (e) {
        assert.ok(e instanceof NbdEofError, String(e));
        break;
      }
    }
    const stopped = await stopping;
    assert.equal(stopped.killed, false, 'the server must exit on SIGTERM by itself');
    assert.equal(stopped.code, 0, server.stderr());
    assert.equal(existsSync((server.endpoint as { path: string }).path), false, 'socket file removed');
    await toolOk('check after SIGTERM', qemuImg(['check', '-f', 'qed', path]));
    if (answered.length > 0) {
      await toolOk('acknowledged writes present', qemuIo(['-f', 'qed', '-r', ...answered.flatMap((i) => ['-c', `read -P 0x44 ${16 + i}M 1M`]), path]));
    }

    const once = await startQedServe(t, { files: [path], listen: 'unix', dir, flags: [] });
    const c = await connect(once);
    await c.negotiate();
    assert.equal(await c.disconnect(), true);
    const ended = await Promise.race([once.exited, sleep(5000).then(() => null)]);
    assert.ok(ended && ended.code === 0, `without -t the server exits 0 after its client leaves (${JSON.stringify(ended)})`);
  });
});

