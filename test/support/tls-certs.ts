// Test credentials for NBD over TLS, made with `openssl` in a scratch directory: a certificate
// authority, a server certificate for 127.0.0.1 and localhost, a client certificate, and a
// keys.psk file, laid out as QEMU's x509 credentials directories so that one directory serves
// `qemu-nbd --object tls-creds-x509,dir=…`, `qed serve --tls-creds …`, QEMU clients and libnbd's
// `tls-certificates=…` URI parameter alike:
//
//   server/  ca-cert.pem  server-cert.pem  server-key.pem
//   client/  ca-cert.pem  client-cert.pem  client-key.pem
//   rogue/   ca-cert.pem  client-cert.pem  client-key.pem   (a client of another CA)
//   psk/     keys.psk     (one "username:hexkey" line)
//
// The extensions follow what QEMU's x509 credentials check when they are marked critical:
// basic constraints, key usage (signing plus key encipherment for end entities), and the key
// purpose (server or client authentication) for each end.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { after, before } from 'node:test';
import { join } from 'node:path';
import { nbdScratch, qemuImg, runTool, toolOk } from './nbd-tools.js';

export interface TlsCerts {
  root: string;
  /** QEMU x509 server directory. */
  serverDir: string;
  /** QEMU x509 client directory (also libnbd's tls-certificates directory). */
  clientDir: string;
  /** A client directory whose certificate another CA signed (its ca-cert.pem is ours, so it trusts the server). */
  rogueClientDir: string;
  /** Directory holding keys.psk, and the file itself. */
  pskDir: string;
  pskFile: string;
  pskUser: string;
  pskKeyHex: string;
  /** PEM contents for Node's tls.connect in the raw client. */
  pem: { ca: Buffer; clientCert: Buffer; clientKey: Buffer; rogueCert: Buffer; rogueKey: Buffer };
}

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  await toolOk(`openssl ${args.join(' ')}`, runTool('openssl', args, { cwd, timeoutMs: 30_000 }));
}

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '3',
    '-keyout', `${name}-key.pem`, '-out', `${name}-cert.pem`, '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
}

async function makeLeaf(dir: string, ca: string, name: string, cn: string, purpose: 'serverAuth' | 'clientAuth', san?: string): Promise<void> {
  const ext = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${purpose}`,
    ...(san ? [`subjectAltName=${san}`] : []),
  ].join('\n') + '\n';
  await writeFile(join(dir, `${name}.ext`), ext);
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
  await openssl(['x509', '-req', '-sha256', '-days', '3', '-in', `${name}.csr`, '-CA', `${ca}-cert.pem`, '-CAkey', `${ca}-key.pem`,
    '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-out', `${name}-cert.pem`, '-extfile', `${name}.ext`], dir);
}

/** Make the whole set under `root` (created if missing). About a second of openssl. */
export async function makeTlsCerts(root: string): Promise<TlsCerts> {
  const work = join(root, 'work');
  const serverDir = join(root, 'server');
  const clientDir = join(root, 'client');
  const rogueClientDir = join(root, 'rogue');
  const pskDir = join(root, 'psk');
  for (const d of [work, serverDir, clientDir, rogueClientDir, pskDir]) await mkdir(d, { recursive: true });

  await makeCa(work, 'ca');
  await makeCa(work, 'otherca');
  await makeLeaf(work, 'ca', 'server', 'localhost', 'serverAuth', 'IP:127.0.0.1,DNS:localhost');
  await makeLeaf(work, 'ca', 'client', 'qed-test-client', 'clientAuth');
  await makeLeaf(work, 'otherca', 'rogue', 'qed-rogue-client', 'clientAuth');

  const ca = await readFile(join(work, 'ca-cert.pem'));
  const copy = async (from: string, dir: string, to: string): Promise<void> => writeFile(join(dir, to), await readFile(join(work, from)));
  for (const dir of [serverDir, clientDir, rogueClientDir]) await writeFile(join(dir, 'ca-cert.pem'), ca);
  await copy('server-cert.pem', serverDir, 'server-cert.pem');
  await copy('server-key.pem', serverDir, 'server-key.pem');
  await copy('client-cert.pem', clientDir, 'client-cert.pem');
  await copy('client-key.pem', clientDir, 'client-key.pem');
  await copy('rogue-cert.pem', rogueClientDir, 'client-cert.pem');
  await copy('rogue-key.pem', rogueClientDir, 'client-key.pem');

  const pskUser = 'qedtest';
  const pskKeyHex = randomBytes(32).toString('hex');
  const pskFile = join(pskDir, 'keys.psk');
  await writeFile(pskFile, `${pskUser}:${pskKeyHex}\n`, { mode: 0o600 });

  return {
    root, serverDir, clientDir, rogueClientDir, pskDir, pskFile, pskUser, pskKeyHex,
    pem: {
      ca,
      clientCert: await readFile(join(work, 'client-cert.pem')),
      clientKey: await readFile(join(work, 'client-key.pem')),
      rogueCert: await readFile(join(work, 'rogue-cert.pem')),
      rogueKey: await readFile(join(work, 'rogue-key.pem')),
    },
  };
}

/** `--object` arguments for QEMU tools (qemu-img, qemu-io, qemu-nbd) with x509 credentials. */
export function qemuX509Object(id: string, dir: string, endpoint: 'server' | 'client', verifyPeer = true): string[] {
  return ['--object', `tls-creds-x509,id=${id},endpoint=${endpoint},dir=${dir}${endpoint === 'server' ? `,verify-peer=${verifyPeer ? 'on' : 'off'}` : ''}`];
}

/** `--object` arguments for QEMU tools with PSK credentials (the client names its user). */
export function qemuPskObject(id: string, dir: string, endpoint: 'server' | 'client', username?: string): string[] {
  return ['--object', `tls-creds-psk,id=${id},endpoint=${endpoint},dir=${dir}${username ? `,username=${username}` : ''}`];
}

/**
 * For one describe(): credentials made before its tests and removed after them, and a small
 * QED image to serve. Read `certs` inside tests (it is set by the before hook).
 */
export function tlsSuite(): { readonly certs: TlsCerts; image(dir: string): Promise<string> } {
  let certs: TlsCerts | undefined;
  let root = '';
  before(async () => {
    root = await nbdScratch();
    certs = await makeTlsCerts(join(root, 'tls'));
  });
  after(() => rm(root, { recursive: true, force: true }));
  return {
    get certs(): TlsCerts {
      if (!certs) throw new Error('TLS credentials are made in the before hook: read them inside a test');
      return certs;
    },
    async image(dir: string): Promise<string> {
      const path = join(dir, 'disk.qed');
      await toolOk('create', qemuImg(['create', '-q', '-f', 'qed', path, '16M']));
      return path;
    },
  };
}
