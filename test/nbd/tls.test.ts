// `qed serve --tls-creds` with a CA, server and client certificates made by the test
// (test/support/tls-certs.ts, proven against qemu-nbd in tls-certs.test.ts): TLS is required
// (plaintext clients refused, every option but STARTTLS answered NBD_REP_ERR_TLS_REQD), a
// client certificate from the CA is required unless --tls-verify-peer=no, qemu-io over TLS
// writes what qemu-io then reads from the image, PSK keys work, STARTTLS twice is invalid,
// and plaintext pipelined behind STARTTLS is discarded rather than answered inside TLS.
import assert from 'node:assert/strict';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { NbdEofError, NbdRawClient, OPT, REP, optionBytes, u32be } from '../support/nbd-raw-client.js';
import { nbdinfo, nbdinfoJson, nbdScratch, qemuIo, startQedServe, toolOk, type Server } from '../support/nbd-tools.js';
import { qemuX509Object, tlsSuite } from '../support/tls-certs.js';

const MiB = 1024 * 1024;

describe('qed serve with TLS', { concurrency: 2 }, () => {
  const tls = tlsSuite();
  const rawConnect = (s: Server): Promise<NbdRawClient> =>
    s.endpoint.kind === 'unix' ? NbdRawClient.unix(s.endpoint.path) : NbdRawClient.tcp(s.endpoint.port);
  const nodeTls = () => ({ ca: tls.certs.pem.ca, cert: tls.certs.pem.clientCert, key: tls.certs.pem.clientKey, servername: 'localhost' });

  for (const listen of ['unix', 'tcp'] as const) {
    it(`x509 over ${listen}: plaintext refused; nbdinfo and qemu-io with the client certificate work; foreign or missing client certificates refused`, async (t) => {
      const dir = await nbdScratch(t);
      const img = await tls.image(dir);
      const server = await startQedServe(t, { files: [img], listen, dir, flags: ['-t', '-e', '4', '-x', 'disk', '--tls-creds', tls.certs.serverDir] });

      const plain = await nbdinfo(['--no-content', server.uri('disk')], { timeoutMs: 20_000 });
      assert.notEqual(plain.code, 0, 'a plaintext client must be refused');

      const json = await nbdinfoJson(server.uri('disk', { certificates: tls.certs.clientDir }), ['--no-content']);
      assert.equal(json.TLS, true);
      assert.equal(json.exports[0]!['export-size'], 16 * MiB);

      await toolOk('qemu-io over TLS', qemuIo([...qemuX509Object('tls0', tls.certs.clientDir, 'client'), '--image-opts',
        '-c', 'write -P 0x5c 1M 256k', '-c', 'read -P 0x5c 1M 256k', '-c', 'flush', server.imageOpts('disk', 'tls0')]));

      const rogue = await nbdinfo(['--no-content', server.uri('disk', { certificates: tls.certs.rogueClientDir })], { timeoutMs: 20_000 });
      assert.notEqual(rogue.code, 0, 'a certificate from another CA must be refused');
      const caOnly = join(dir, 'ca-only');
      await mkdir(caOnly);
      await copyFile(join(tls.certs.clientDir, 'ca-cert.pem'), join(caOnly, 'ca-cert.pem'));
      const anonymous = await nbdinfo(['--no-content', server.uri('disk', { certificates: caOnly })], { timeoutMs: 20_000 });
      assert.notEqual(anonymous.code, 0, 'a client without a certificate must be refused');

      // The server is still serving after all that.
      assert.equal((await nbdinfoJson(server.uri('disk', { certificates: tls.certs.clientDir }), ['--no-content'])).TLS, true);
      const stopped = await server.stop();
      assert.equal(stopped.code, 0, server.stderr());
      await toolOk('read back from the file', qemuIo(['-f', 'qed', '-r', '-c', 'read -P 0x5c 1M 256k', '-c', 'read -P 0 0 1M', img]));
    });
  }

  it('--tls-verify-peer=no accepts a client without a certificate', async (t) => {
    const dir = await nbdScratch(t);
    const img = await tls.image(dir);
    const caOnly = join(dir, 'ca-only');
    await mkdir(caOnly);
    await copyFile(join(tls.certs.clientDir, 'ca-cert.pem'), join(caOnly, 'ca-cert.pem'));
    const open = await startQedServe(t, { files: [img], listen: 'tcp', dir, flags: ['-t', '-r', '--tls-creds', tls.certs.serverDir, '--tls-verify-peer=no'] });
    assert.equal((await nbdinfoJson(open.uri('', { certificates: caOnly }), ['--no-content'])).TLS, true);
  });

  it('--tls-psk accepts the keys.psk user (libnbd with tls-psk-file) and refuses a wrong key; x509 still works beside it', async (t) => {
    const dir = await nbdScratch(t);
    const img = await tls.image(dir);
    const psk = await startQedServe(t, { files: [img], listen: 'unix', dir, flags: ['-t', '-r', '--tls-creds', tls.certs.serverDir, '--tls-psk', tls.certs.pskFile] });
    assert.equal((await nbdinfoJson(psk.uri('', { pskFile: tls.certs.pskFile, username: tls.certs.pskUser }), ['--no-content'])).TLS, true);
    const wrong = join(dir, 'wrong.psk');
    await writeFile(wrong, `${tls.certs.pskUser}:${'ab'.repeat(32)}\n`);
    const bad = await nbdinfo(['--no-content', psk.uri('', { pskFile: wrong, username: tls.certs.pskUser })], { timeoutMs: 20_000 });
    assert.notEqual(bad.code, 0, 'a wrong PSK must be refused');
    assert.equal((await nbdinfoJson(psk.uri('', { certificates: tls.certs.clientDir }), ['--no-content'])).TLS, true, 'x509 still works beside PSK');
  });

  it('raw client: options before STARTTLS get NBD_REP_ERR_TLS_REQD, EXPORT_NAME ends the session, STARTTLS twice is invalid', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQedServe(t, { files: [await tls.image(dir)], listen: 'tcp', dir, flags: ['-t', '-e', '4', '--tls-creds', tls.certs.serverDir] });

    const c = await rawConnect(server);
    t.after(() => c.destroy());
    await c.start();
    assert.equal((await c.list()).final, REP.ERR_TLS_REQD);
    assert.equal((await c.info('')).final, REP.ERR_TLS_REQD);
    assert.equal(await c.structuredReply(), REP.ERR_TLS_REQD);
    assert.equal((await c.go('')).final, REP.ERR_TLS_REQD);
    assert.equal((await c.option(0x1234))[0]!.type, REP.ERR_TLS_REQD, 'even unknown options, before TLS');
    const ack = await c.startTls(nodeTls());
    assert.equal(ack.type, REP.ACK);
    const again = await c.option(OPT.STARTTLS);
    assert.equal(again[0]!.type, REP.ERR_INVALID, 'STARTTLS inside TLS');
    assert.equal(await c.structuredReply(), REP.ACK);
    const go = await c.go('');
    assert.equal(go.final, REP.ACK);
    assert.equal((await c.write(0, Buffer.alloc(4096, 9))).error, 0);
    assert.ok((await c.read(0, 4096)).data!.every((b) => b === 9));
    assert.equal(await c.disconnect(), true);

    const e = await rawConnect(server);
    t.after(() => e.destroy());
    await e.start();
    await e.sendOption(OPT.EXPORT_NAME, Buffer.from(''));
    await assert.rejects(e.readBytes(10), NbdEofError, 'EXPORT_NAME before TLS: the server must end the session');
  });

  it('plaintext pipelined behind STARTTLS is discarded: the first answer inside TLS is to the first option sent inside TLS', async (t) => {
    const dir = await nbdScratch(t);
    const server = await startQedServe(t, { files: [await tls.image(dir)], listen: 'unix', dir, flags: ['-t', '-e', '4', '--tls-creds', tls.certs.serverDir] });
    const c = await rawConnect(server);
    t.after(() => c.destroy());
    await c.readGreeting();
    // Client flags, STARTTLS, then an injected STRUCTURED_REPLY and GO in the same write.
    await c.send(Buffer.concat([u32be(3), optionBytes(OPT.STARTTLS), optionBytes(OPT.STRUCTURED_REPLY), optionBytes(OPT.GO, Buffer.alloc(6))]));
    const ack = await c.readOptionReply();
    assert.equal(ack.option, OPT.STARTTLS);
    assert.equal(ack.type, REP.ACK);
    await c.upgrade(nodeTls());
    const list = await c.list();
    assert.equal(list.replies[0]!.option, OPT.LIST, 'the injected options must not be answered');
    assert.equal(list.final, REP.ACK);
    // Nothing negotiated in plaintext survives: structured replies were not negotiated inside TLS.
    const meta = await c.setMetaContext('', ['base:allocation']);
    assert.equal(meta.final, REP.ERR_INVALID);
  });
});
