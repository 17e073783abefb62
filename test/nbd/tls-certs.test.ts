// The test credentials (test/support/tls-certs.ts) proven against qemu-nbd, so that a TLS
// failure against our server is the server's: qemu-nbd with the server directory accepts
// qemu-img with the client directory and nbdinfo with tls-certificates=, refuses a plaintext
// client and a client whose certificate another CA signed; the keys.psk file works for both;
// the raw client's STARTTLS upgrade (Node's TLS with the same PEM files) reaches transmission.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rm, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { NbdRawClient, REP } from '../support/nbd-raw-client.js';
import { nbdScratch, nbdinfo, nbdinfoJson, qemuImg, qemuIo, startServer, toolOk, type Server } from '../support/nbd-tools.js';
import { makeTlsCerts, qemuPskObject, qemuX509Object, type TlsCerts } from '../support/tls-certs.js';

const MiB = 1024 * 1024;

function qemuNbdTls(t: Parameters<typeof startServer>[0], dir: string, image: string, object: string[], listen: 'unix' | 'tcp'): Promise<Server> {
  return startServer(t, {
    program: 'qemu-nbd', listen, dir, ready: 'pid-file',
    args: (ep, pid) => ['-f', 'qed', '-t', '-e', '4', '-x', 'disk', ...object, '--tls-creds', 'tls0',
      ...(ep.kind === 'unix' ? ['-k', ep.path] : ['-p', String(ep.port), '-b', ep.host]), `--pid-file=${pid}`, image],
  });
}

describe('TLS test credentials with qemu-nbd', { concurrency: 2 }, () => {
  let certs: TlsCerts;
  let root: string;
  before(async () => {
    root = await nbdScratch();
    certs = await makeTlsCerts(join(root, 'tls'));
  });
  after(() => rm(root, { recursive: true, force: true }));
  const image = async (dir: string): Promise<string> => {
    const path = join(dir, 'disk.qed');
    await toolOk('create', qemuImg(['create', '-q', '-f', 'qed', path, '16M']));
    return path;
  };

  for (const listen of ['unix', 'tcp'] as const) {
    it(`x509 over ${listen}: qemu-img and nbdinfo with the client directory connect; plaintext and a foreign CA's client are refused`, async (t) => {
      const dir = await nbdScratch(t);
      const server = await qemuNbdTls(t, dir, await image(dir), qemuX509Object('tls0', certs.serverDir, 'server'), listen);

      const info = await toolOk('qemu-img info over TLS', qemuImg(['info', '--output=json',
        ...qemuX509Object('tls0', certs.clientDir, 'client'), '--image-opts', server.imageOpts('disk', 'tls0')]));
      assert.equal((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size'], 16 * MiB);
      await toolOk('qemu-io over TLS', qemuIo([...qemuX509Object('tls0', certs.clientDir, 'client'), '--image-opts',
        '-c', 'write -P 0x42 0 64k', '-c', 'read -P 0x42 0 64k', server.imageOpts('disk', 'tls0')]));

      const json = await nbdinfoJson(server.uri('disk', { certificates: certs.clientDir }), ['--no-content']);
      assert.equal(json.TLS, true);
      assert.equal(json.exports[0]!['export-size'], 16 * MiB);

      const plain = await nbdinfo(['--no-content', server.uri('disk')], { timeoutMs: 20_000 });
      assert.notEqual(plain.code, 0, 'a plaintext client must be refused');
      const rogue = await nbdinfo(['--no-content', server.uri('disk', { certificates: certs.rogueClientDir })], { timeoutMs: 20_000 });
      assert.notEqual(rogue.code, 0, 'a client certificate from another CA must be refused');
    });
  }

  it('raw client: options before STARTTLS get NBD_REP_ERR_TLS_REQD; after the upgrade (Node TLS, client certificate) GO succeeds', async (t) => {
    const dir = await nbdScratch(t);
    const server = await qemuNbdTls(t, dir, await image(dir), qemuX509Object('tls0', certs.serverDir, 'server'), 'tcp');
    assert.equal(server.endpoint.kind, 'tcp');
    if (server.endpoint.kind !== 'tcp') return;
    const c = await NbdRawClient.tcp(server.endpoint.port);
    t.after(() => c.destroy());
    await c.start();
    const early = await c.list();
    assert.equal(early.final, REP.ERR_TLS_REQD);
    const r = await c.startTls({ ca: certs.pem.ca, cert: certs.pem.clientCert, key: certs.pem.clientKey, servername: 'localhost' });
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
    const server = await qemuNbdTls(t, dir, await image(dir), qemuPskObject('tls0', certs.pskDir, 'server'), 'unix');
    const json = await nbdinfoJson(server.uri('disk', { pskFile: certs.pskFile, username: certs.pskUser }), ['--no-content']);
    assert.equal(json.TLS, true);
    await toolOk('qemu-img info over PSK', qemuImg(['info', ...qemuPskObject('tls0', certs.pskDir, 'client', certs.pskUser),
      '--image-opts', server.imageOpts('disk', 'tls0')]));

    const wrong = join(dir, 'wrong.psk');
    await writeFile(wrong, `${certs.pskUser}:${'00'.repeat(32)}\n`);
    const bad = await nbdinfo(['--no-content', server.uri('disk', { pskFile: wrong, username: certs.pskUser })], { timeoutMs: 20_000 });
    assert.notEqual(bad.code, 0);
  });
});
