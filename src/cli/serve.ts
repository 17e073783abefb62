// qed serve [options] FILE…: export images over NBD, in qemu-nbd's style where they overlap.
// This file only parses flags, opens the images and starts the library's server; the
// protocol lives in src/nbd.
import type { Command } from 'commander';
import { readFile, writeFile, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { UsageError } from '../base/errors.js';
import type { BlockDevice } from '../engine/device.js';
import { startNbdServer, type ListenOn } from '../nbd/server/server.js';
import type { NbdExport, TlsSettings } from '../nbd/server/exports.js';
import { openDevice } from '../ops/open.js';
import { parseFormat } from './options.js';
import type { RunCommand } from './report.js';

const DEFAULT_PORT = 10809;

interface ServeFlags {
  socket?: string; port?: string; bind: string; exportName?: string; description?: string; readOnly?: boolean;
  shared: string; persistent?: boolean; format?: string; pidFile?: string; tlsCreds?: string; tlsVerifyPeer: string;
  tlsPsk?: string; quiet?: boolean;
}

export function registerServe(program: Command, run: RunCommand): void {
  program.command('serve')
    .description('export images over NBD (a qemu-nbd work-alike): QEMU, the kernel, nbdcopy, nbdinfo and fio can use them')
    .usage('[-k SOCKET | -p PORT [-b ADDR]] [-x NAME] [-D TEXT] [-r] [-e N] [-t] [-f FMT] [--tls-creds DIR] FILE…')
    .option('-k, --socket <path>', 'listen on this unix socket')
    .option('-p, --port <port>', `listen on this TCP port (default ${DEFAULT_PORT} when no socket is given)`)
    .option('-b, --bind <addr>', 'address to listen on', '127.0.0.1')
    .option('-x, --export-name <name>', 'name of the export (one FILE only; default: the empty name)')
    .option('-D, --description <text>', 'description of the export (one FILE only)')
    .option('-r, --read-only', 'export read-only')
    .option('-e, --shared <n>', 'clients served at once; more than 1 advertises multi-conn', '1')
    .option('-t, --persistent', 'keep serving after the last client leaves')
    .option('-f, --format <fmt>', 'image format (probed when not given)')
    .option('--pid-file <path>', 'write the process id here')
    .option('--tls-creds <dir>', 'require TLS with the x509 credentials in DIR (ca-cert.pem, server-cert.pem, server-key.pem)')
    .option('--tls-verify-peer <yes|no>', 'require a client certificate signed by the CA', 'yes')
    .option('--tls-psk <file>', 'also accept TLS-PSK clients with the keys in FILE (identity:hexkey lines); TLS 1.2 then')
    .option('--quiet', 'do not print where the server listens')
    .argument('<files...>')
    .addHelpText('after', [
      '', 'Examples:',
      '  qed serve -k /tmp/disk.sock disk.qed          nbdinfo nbd+unix:///?socket=/tmp/disk.sock',
      '  qed serve -p 10809 -e 4 -t a.qed b.qed        exports "a.qed" (also as "") and "b.qed"',
      '  nbdinfo -- [ qed serve disk.qed ]              socket activation',
    ].join('\n'))
    .action((files: string[], flags: ServeFlags) => run('serve', files[0], () => serve(files, flags)));
}

async function serve(files: string[], flags: ServeFlags): Promise<number> {
  if (files.length > 1 && (flags.exportName !== undefined || flags.description !== undefined)) {
    throw new UsageError('-x and -D name one export: give one FILE, or let several be named after their files');
  }
  const shared = Number(flags.shared);
  if (!Number.isInteger(shared) || shared < 1 || shared > 1024) throw new UsageError(`invalid --shared '${flags.shared}'`);
  if (flags.tlsVerifyPeer !== 'yes' && flags.tlsVerifyPeer !== 'no') throw new UsageError(`--tls-verify-peer takes yes or no, not '${flags.tlsVerifyPeer}'`);
  if (flags.tlsPsk && !flags.tlsCreds) throw new UsageError('--tls-psk needs --tls-creds as well');
  const listen = listenOn(flags);
  const tls = flags.tlsCreds ? await loadTls(flags.tlsCreds, flags.tlsVerifyPeer === 'yes', flags.tlsPsk) : null;
  const format = parseFormat(flags.format);
  const devices: BlockDevice[] = [];
  let code = 1;
  try {
    for (const file of files) devices.push(await openDevice(file, { format, readOnly: Boolean(flags.readOnly) }));
    const exports: NbdExport[] = devices.map((device, i) => ({
      name: files.length === 1 ? (flags.exportName ?? '') : basename(files[i]!),
      description: files.length === 1 ? (flags.description ?? '') : '',
      device,
    }));
    code = await runServer(exports, listen, tls, shared, flags);
  } finally {
    // Closing writes everything back: a failure means acknowledged writes may be lost, so it
    // is reported and changes the exit code.
    for (const d of devices) {
      await d.close().catch((err: unknown) => {
        process.stderr.write(`qed: serve: ${d.path}: ${err instanceof Error ? err.message : String(err)}\n`);
        code = 1;
      });
    }
  }
  return code;
}

async function runServer(exports: NbdExport[], listen: ListenOn, tls: TlsSettings | null, shared: number, flags: ServeFlags): Promise<number> {
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => { finish = resolve; });
  const server = await startNbdServer({
    exports, listen, tls, readOnly: Boolean(flags.readOnly), maxClients: shared,
    log: (line) => process.stderr.write(`qed: serve: ${line}\n`),
    onIdle: () => { if (!flags.persistent) finish(); },
  });
  const onSignal = (): void => finish();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  if (flags.pidFile) await writeFile(flags.pidFile, `${process.pid}\n`);
  if (!flags.quiet) process.stderr.write(`qed serve: listening on ${server.address}\n`);
  try {
    await finished;
    await server.stop();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (flags.pidFile) await unlink(flags.pidFile).catch(() => undefined);
  }
  return 0;
}

/** -k, -p/-b, or the socket systemd (or nbdinfo's [ … ]) handed us on fd 3. */
function listenOn(flags: ServeFlags): ListenOn {
  const activated = Number(process.env.LISTEN_PID) === process.pid && Number(process.env.LISTEN_FDS) >= 1;
  if (activated) {
    if (flags.socket || flags.port) throw new UsageError('socket activation (LISTEN_FDS) cannot be combined with -k or -p');
    return { kind: 'fd', fd: 3 };
  }
  if (flags.socket && flags.port) throw new UsageError('-k and -p are alternatives');
  if (flags.socket) return { kind: 'unix', path: flags.socket };
  const port = flags.port === undefined ? DEFAULT_PORT : Number(flags.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`invalid port '${flags.port}'`);
  return { kind: 'tcp', host: flags.bind, port };
}

/** QEMU's x509 directory layout, and the keys.psk format (one `identity:hexkey` per line). */
async function loadTls(dir: string, verifyPeer: boolean, pskFile: string | undefined): Promise<TlsSettings> {
  const read = async (name: string, required: boolean): Promise<Buffer | undefined> => {
    try { return await readFile(join(dir, name)); } catch (err) {
      if (!required) return undefined;
      throw new UsageError(`cannot read ${join(dir, name)}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  const ca = await read('ca-cert.pem', verifyPeer);
  const cert = await read('server-cert.pem', true);
  const key = await read('server-key.pem', true);
  return { context: { ca, cert, key, minVersion: 'TLSv1.2' }, verifyPeer, psk: pskFile ? await loadPskKeys(pskFile) : null };
}

async function loadPskKeys(file: string): Promise<Map<string, Buffer>> {
  const text = await readFile(file, 'utf8').catch((err: unknown) => {
    throw new UsageError(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
  });
  const keys = new Map<string, Buffer>();
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '') continue;
    const colon = trimmed.indexOf(':');
    const hexKey = trimmed.slice(colon + 1);
    if (colon <= 0 || !/^([0-9a-fA-F]{2})+$/.test(hexKey)) throw new UsageError(`${file}: each line must be identity:hexkey`);
    keys.set(trimmed.slice(0, colon), Buffer.from(hexKey, 'hex'));
  }
  if (keys.size === 0) throw new UsageError(`${file}: no keys`);
  return keys;
}
