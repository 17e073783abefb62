// The test credentials (test/support/tls-certs.ts) proven against qemu-nbd, so that a TLS
// failure against our server is the server's: qemu-nbd with the server directory accepts
// qemu-img with the client directory and nbdinfo with tls-certificates=, refuses a plaintext
// client and a client whose certificate another CA signed; the keys.psk file works for both;
// the raw client's STARTTLS upgrade (Node's TLS with the same PEM files) reaches transmission.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { NbdRawClient, REP } from '../support/nbd-raw-client.js';
import { nbdScratch, nbdinfo, nbdinfoJson, qemuImg, qemuIo, startServer, toolOk, type Server } from '../support/nbd-tools.js';
import { qemuPskObject, qemuX509Object, tlsSuite } from '../support/tls-certs.js';

const MiB = 1024 * 1024;

function qemuNbdTls(t: Parameters<typeof startServer>[0], dir: string, image: string, object: string[], listen: 'unix' | 'tcp'): Promise<Server> {
  return startServer(t, {
    program: 'qemu-nbd', listen, dir, ready: 'pid-file',
    args: (ep, pid) => ['-f', 'qed', '-t', '-e', '4', '-x', 'disk', ...object, '--tls-creds', 'tls0',
      ...(ep.kind === 'unix' ? ['-k', ep.path] : ['-p', String(ep.port), '-b', ep.host]), `--pid-file=${pid}`, image],
  });
}

describe('TLS test credentials with qemu-nbd', { concurrency: 2 }, () => {
  const tls = tlsSuite();

  for (const listen of ['unix', 'tcp'] as const) {
    it(`x509 over ${listen}: qemu-img and nbdinfo with the client directory connect; plaintext and a foreign CA's client are refused`, async (t) => {
      const dir = await nbdScratch(t);
      const server = await qemuNbdTls(t, dir, await tls.image(dir), qemuX509Object('tls0', tls.certs.serverDir, 'server'), listen);

      const info = await toolOk('qemu-img info over TLS', qemuImg(['info', '--output=json',
        ...qemuX509Object('tls0', tls.certs.clientDir, 'client'), '--image-opts', server.imageOpts('disk', 'tls0')]));
      assert.equal((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size'], 16 * MiB);
      await toolOk('qemu-io over TLS', qemuIo([...qemuX509Object('tls0', tls.certs.clientDir, 'client'), '--image-opts',
        '-c', 'write -P 0x42 0 64k', '-c', 'read -P 0x42 0 64k', server.imageOpts('disk', 'tls0')]));

      const json = await nbdinfoJson(server.uri('disk', { certificates: tls.certs.clientDir }), ['--no-content']);
      assert.equal(json.TLS, true);
      assert.equal(json.exports[0]!['export-size'], 16 * MiB);

      const plain = await nbdinfo(['--no-content', server.uri('disk')], { timeoutMs: 20_000 });
      assert.notEqual(plain.code, 0, 'a plaintext client must be refused');
      const rogue = await nbdinfo(['--no-content', server.uri('disk', { certificates: tls.certs.rogueClientDir })], { timeoutMs: 20_000 });
      assert.notEqual(rogue.code, 0, 'a client certificate from another CA must be refused');
    });
  }

  it('raw client: options before STARTTLS get NBD_REP_ERR_TLS_REQD; after the upgrade (Node TLS, client certificate) GO succeeds', async (t) => {
    const dir = await nbdScratch(t);
    const server = await qemuNbdTls(t, dir, await tls.image(dir), qemuX509Object('tls0', tls.certs.serverDir, 'server'), 'tcp');
    assert.equal(server.endpoint.kind, 'tcp');
    if (server.endpoint.kind !== 'tcp') return;
    const c = await NbdRawClient.tcp(server.endpoint.port);
    t.after(() => c.destroy());
    await c.start();
    const early = await c.list();
    assert.equal(early.final, REP.ERR_TLS_REQD);
    const r = await c.startTls({ ca: tls.certs.pem.ca, cert: tls.certs.pem.clientCert, key: tls.certs.pem.clientKey, servername: 'localhost' });
    assert.equal(r.type, REP.ACK);
    assert.equal(await c.structuredReply(), REP.ACK);
    const go = await c.go('disk');
    assert.equal(go.final, REP.ACK);
    assert.equal(go.size, BigInt(16 * MiB));
    const w = await c.write(0, Buffer.alloc(4096, 7));
    assert.equal(w.error, 0);
    assert.ok((await c.read(0, 4096)).data!.every((b) => b === 7));
    assert.equal(await c.disconnect(), true);
  });

  it('PSK: qemu-nbd with keys.psk serves nbdinfo (tls-psk-file) and qemu-img (tls-creds-psk); a wrong key is refused', async (t) => {
    const dir = await nbdScratch(t);
    const server = await qemuNbdTls(t, dir, await tls.image(dir), qemuPskObject('tls0', tls.certs.pskDir, 'server'), 'unix');
    const json = await nbdinfoJson(server.uri('disk', { pskFile: tls.certs.pskFile, username: tls.certs.pskUser }), ['--no-content']);
    assert.equal(json.TLS, true);
    await toolOk('qemu-img info over PSK', qemuImg(['info', ...qemuPskObject('tls0', tls.certs.pskDir, 'client', tls.certs.pskUser),
      '--image-opts', server.imageOpts('disk', 'tls0')]));

    const wrong = join(dir, 'wrong.psk');
    await writeFile(wrong, `${tls.certs.pskUser}:${'00'.repeat(32)}\n`);
    const bad = await nbdinfo(['--no-content', server.uri('disk', { pskFile: wrong, username: tls.certs.pskUser })], { timeoutMs: 20_000 });
    assert.notEqual(bad.code, 0);
  });
});
