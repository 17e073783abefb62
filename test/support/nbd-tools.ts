// Support for the NBD tests and the NBD benchmark: starting and stopping a server process
// (`qed serve`, qemu-nbd or nbdkit) on a unix socket or on 127.0.0.1 with a free port, and
// running the clients that judge it (nbdinfo, nbdcopy, qemu-io, qemu-img, fio, nbdsh).
//
// Two rules hold everywhere here:
//   - every wait is bounded: a server that never listens, a client that never exits, a
//     server that ignores SIGTERM all end in a SIGKILL and a clear error, never a hung run;
//   - no process outlives its test: each server is stopped by the test's `after` hook, and a
//     process-wide exit hook kills whatever is still running (by the pids we started, and
//     their process groups, nothing broader).
// The helpers capture what each tool printed and its exit status; judging it is the test's job.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The CLI as installed, bundled by scripts/bundle-cli.mjs: dist/test/support → dist/src/cli/qed.cjs (also right for dist/bench/..). */
export const QED_CLI = fileURLToPath(new URL('../../src/cli/qed.cjs', import.meta.url));

/** Debian's python with python3-libnbd; the pyenv one on PATH has no nbd module. */
export const SYSTEM_PYTHON = '/usr/bin/python3';

// ---- processes we started, killed on exit whatever happens -------------------------------------

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) killGroup(c, 'SIGKILL');
    });
  }
}

/** Signal a child started with `detached: true` and its whole process group (its own, by its pid). */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try { process.kill(-child.pid, signal); } catch { try { child.kill(signal); } catch { /* already gone */ } }
}

// ---- running a client tool ---------------------------------------------------------------------

export interface ToolResult {
  code: number;
  /** The signal that ended the process, if any. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

export interface ToolOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string | Buffer;
  /** Cap on captured output per stream (default 16 MiB); beyond it output is dropped. */
  maxOutput?: number;
}

/** Run a program without a shell, bounded in time (SIGKILL to its process group on timeout). */
export function runTool(program: string, args: readonly string[], opts: ToolOptions = {}): Promise<ToolResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const max = opts.maxOutput ?? 16 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(program, args, {
      cwd: opts.cwd, env: opts.env ?? process.env, detached: true,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    track(child);
    const out: Buffer[] = []; const err: Buffer[] = [];
    let outLen = 0; let errLen = 0;
    child.stdout!.on('data', (d: Buffer) => { if (outLen < max) { out.push(d); outLen += d.length; } });
    child.stderr!.on('data', (d: Buffer) => { if (errLen < max) { err.push(d); errLen += d.length; } });
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {});
      child.stdin!.end(opts.input);
    }
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; killGroup(child, 'SIGKILL'); }, timeoutMs);
    child.once('error', (e) => { clearTimeout(timer); reject(new Error(`could not run ${program}: ${e.message}`)); });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      // Whatever the tool left in its group (a server started by `nbdinfo -- [ ... ]`) goes too.
      try { if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL'); } catch { /* none left */ }
      resolve({
        code: code ?? -1, signal, timedOut, ms: Date.now() - started,
        stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** What a run said, for assertion messages. */
export function describeTool(what: string, r: ToolResult): string {
  return `${what} exited ${r.code}${r.signal ? ` (${r.signal})` : ''}${r.timedOut ? ' after timing out' : ''}\n--- stdout\n${r.stdout.slice(-4000)}--- stderr\n${r.stderr.slice(-4000)}`;
}

/** The run must exit 0. */
export async function toolOk(what: string, pending: Promise<ToolResult>): Promise<ToolResult> {
  const r = await pending;
  if (r.code !== 0) throw new Error(describeTool(what, r));
  return r;
}

// ---- scratch space and ports -------------------------------------------------------------------

/** A fresh directory under /dev/shm (short, so socket paths stay under the 108-byte limit). */
export async function nbdScratch(t?: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join('/dev/shm', 'qnbd-'));
  t?.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A random high port that is free on 127.0.0.1 right now (the server may still lose a race: retried). */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port found on 127.0.0.1 after 50 tries');
}

// ---- servers -----------------------------------------------------------------------------------

export type Endpoint = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export interface TlsUri {
  /** A directory of x509 credentials for the client (ca-cert.pem, client-cert.pem, client-key.pem). */
  certificates?: string;
  /** A keys.psk file and the user name to use from it. */
  pskFile?: string;
  username?: string;
}

export interface Server {
  readonly pid: number;
  readonly endpoint: Endpoint;
  readonly child: ChildProcess;
  /** What the server printed on stderr so far. */
  stderr(): string;
  stdout(): string;
  /** A libnbd / QEMU URI for an export of this server. */
  uri(name?: string, tls?: TlsUri): string;
  /** The same export for qemu's --image-opts (TLS through an --object with id `tlsCredsId`). */
  imageOpts(name?: string, tlsCredsId?: string): string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Signal (SIGTERM by default), wait up to `timeoutMs`, then SIGKILL. Returns how it ended. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }>;
}

export interface StartOptions {
  /** The program and its arguments for a given endpoint. */
  program: string;
  args(endpoint: Endpoint, pidFile: string): string[];
  /** Where to listen: a unix socket in `dir`, or 127.0.0.1 on a free port. */
  listen: 'unix' | 'tcp';
  dir: string;
  /** How to know it listens: a line on stderr matching this, or the pid file being written. */
  ready: RegExp | 'pid-file';
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Name for the socket file (default server-<n>.sock). */
  socketName?: string;
}

let serial = 0;

/** Start a server and wait until it listens; stopped by `t.after` when given. */
export async function startServer(t: { after(fn: () => Promise<void>): void } | null, o: StartOptions): Promise<Server> {
  for (let attempt = 0; ; attempt++) {
    const n = ++serial;
    const endpoint: Endpoint = o.listen === 'unix'
      ? { kind: 'unix', path: join(o.dir, o.socketName ?? `server-${n}.sock`) }
      : { kind: 'tcp', host: '127.0.0.1', port: await freePort() };
    const pidFile = join(o.dir, `server-${n}.pid`);
    try {
      const s = await launch(o, endpoint, pidFile);
      t?.after(async () => { await s.stop(); });
      return s;
    } catch (e) {
      if (e instanceof AddressInUse && attempt < 5) continue;
      throw e;
    }
  }
}

class AddressInUse extends Error {}

function launch(o: StartOptions, endpoint: Endpoint, pidFile: string): Promise<Server> {
  const timeoutMs = o.timeoutMs ?? 15_000;
  const args = o.args(endpoint, pidFile);
  const child = spawn(o.program, args, { env: o.env ?? process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let err = ''; let out = '';
  const cap = 1024 * 1024;
  child.stderr!.on('data', (d: Buffer) => { if (err.length < cap) err += d.toString('utf8'); });
  child.stdout!.on('data', (d: Buffer) => { if (out.length < cap) out += d.toString('utf8'); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const where = endpoint.kind === 'unix' ? `unix:${endpoint.path}` : `${endpoint.host}:${endpoint.port}`;
  const server: Server = {
    pid: child.pid ?? -1,
    endpoint, child, exited,
    stderr: () => err,
    stdout: () => out,
    uri: (name = '', tls?: TlsUri) => nbdUri(endpoint, name, tls),
    imageOpts: (name = '', tlsCredsId?: string) => imageOpts(endpoint, name, tlsCredsId),
    async stop(signal: NodeJS.Signals = 'SIGTERM', stopMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return { ...(await exited), killed: false };
      killGroup(child, signal);
      let killed = false;
      const timer = setTimeout(() => { killed = true; killGroup(child, 'SIGKILL'); }, stopMs);
      const r = await exited;
      clearTimeout(timer);
      return { ...r, killed };
    },
  };
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (e: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer); clearInterval(poll);
      if (e) { killGroup(child, 'SIGKILL'); reject(e); } else resolve(server);
    };
    const timer = setTimeout(() => finish(new Error(`${o.program} did not listen on ${where} within ${timeoutMs} ms\n--- stderr\n${err}`)), timeoutMs);
    const poll = setInterval(() => {
      if (o.ready === 'pid-file') {
        if (existsSync(pidFile)) readFile(pidFile, 'utf8').then((p) => { if (p.trim() !== '') finish(null); }, () => {});
      } else if (o.ready.test(err)) {
        finish(null);
      }
    }, 5);
    child.once('error', (e) => finish(new Error(`could not start ${o.program}: ${e.message}`)));
    child.once('exit', (code, signal) => {
      const msg = `${o.program} ${args.join(' ')} exited (${code ?? signal}) before listening on ${where}\n--- stderr\n${err}`;
      finish(/address already in use|EADDRINUSE/i.test(err) && endpoint.kind === 'tcp' ? new AddressInUse(msg) : new Error(msg));
    });
  });
}

/** nbd+unix:///NAME?socket=PATH or nbd://127.0.0.1:PORT/NAME; nbds… with TLS parameters. */
export function nbdUri(endpoint: Endpoint, name = '', tls?: TlsUri): string {
  const params: string[] = [];
  if (endpoint.kind === 'unix') params.push(`socket=${endpoint.path}`);
  if (tls?.certificates) params.push(`tls-certificates=${tls.certificates}`);
  if (tls?.pskFile) params.push(`tls-psk-file=${tls.pskFile}`);
  const user = tls?.username ? `${encodeURIComponent(tls.username)}@` : '';
  const scheme = `nbd${tls ? 's' : ''}${endpoint.kind === 'unix' ? '+unix' : ''}`;
  const authority = endpoint.kind === 'unix' ? (user ? `${user}localhost` : '') : `${user}${endpoint.host}:${endpoint.port}`;
  const query = params.length ? `?${params.join('&')}` : '';
  return `${scheme}://${authority}/${encodeURIComponent(name)}${query}`;
}

/** QEMU --image-opts for an NBD export (json-free, so paths must not contain commas). */
export function imageOpts(endpoint: Endpoint, name = '', tlsCredsId?: string): string {
  const server = endpoint.kind === 'unix'
    ? `server.type=unix,server.path=${endpoint.path}`
    : `server.type=inet,server.host=${endpoint.host},server.port=${endpoint.port}`;
  // Over a unix socket QEMU has no host name to check the server certificate against: name one.
  const tls = tlsCredsId ? `,tls-creds=${tlsCredsId}${endpoint.kind === 'unix' ? ',tls-hostname=localhost' : ''}` : '';
  return `driver=nbd,${server},export=${name}${tls}`;
}

// ---- the servers we start ------------------------------------------------------------------------

export interface QedServeOptions {
  files: readonly string[];
  listen: 'unix' | 'tcp';
  dir: string;
  /** Extra flags before the files (e.g. ['-t', '-e', '4', '-r']). */
  flags?: readonly string[];
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** `qed serve [flags] -k SOCK | -p PORT -b 127.0.0.1 FILE…`, ready at its "listening on" line. */
export function startQedServe(t: { after(fn: () => Promise<void>): void } | null, o: QedServeOptions): Promise<Server> {
  const quiet = o.flags?.includes('--quiet') ?? false;
  return startServer(t, {
    program: process.execPath,
    listen: o.listen, dir: o.dir, env: o.env, timeoutMs: o.timeoutMs,
    ready: quiet ? 'pid-file' : /listening on/,
    args: (ep, pidFile) => [
      QED_CLI, 'serve', ...(o.flags ?? []),
      ...(ep.kind === 'unix' ? ['-k', ep.path] : ['-p', String(ep.port), '-b', ep.host]),
      ...(quiet ? ['--pid-file', pidFile] : []),
      ...o.files,
    ],
  });
}

export interface QemuNbdOptions {
  image: string;
  format?: string;
  listen: 'unix' | 'tcp';
  dir: string;
  /** Extra flags (default ['-t', '-e', '8']: persistent, eight clients). */
  flags?: readonly string[];
  timeoutMs?: number;
}

/** `qemu-nbd -f FMT [flags] -k SOCK | -p PORT -b 127.0.0.1 --pid-file P IMAGE`, ready once the pid file is written. */
export function startQemuNbd(t: { after(fn: () => Promise<void>): void } | null, o: QemuNbdOptions): Promise<Server> {
  return startServer(t, {
    program: 'qemu-nbd',
    listen: o.listen, dir: o.dir, timeoutMs: o.timeoutMs, ready: 'pid-file',
    args: (ep, pidFile) => [
      '-f', o.format ?? 'qed', ...(o.flags ?? ['-t', '-e', '8']),
      ...(ep.kind === 'unix' ? ['-k', ep.path] : ['-p', String(ep.port), '-b', ep.host]),
      `--pid-file=${pidFile}`, o.image,
    ],
  });
}

export interface NbdkitOptions {
  /** Plugin and its parameters, e.g. ['null', 'size=1G'] or ['memory', '1G']. */
  plugin: readonly string[];
  listen: 'unix' | 'tcp';
  dir: string;
  flags?: readonly string[];
  timeoutMs?: number;
}

/** `nbdkit -f [flags] -U SOCK | -p PORT -i 127.0.0.1 -P PIDFILE PLUGIN…`, in the foreground. */
export function startNbdkit(t: { after(fn: () => Promise<void>): void } | null, o: NbdkitOptions): Promise<Server> {
  return startServer(t, {
    program: 'nbdkit',
    listen: o.listen, dir: o.dir, timeoutMs: o.timeoutMs, ready: 'pid-file',
    args: (ep, pidFile) => [
      '-f', ...(o.flags ?? []),
      ...(ep.kind === 'unix' ? ['-U', ep.path] : ['-p', String(ep.port), '-i', ep.host]),
      '-P', pidFile, ...o.plugin,
    ],
  });
}

// ---- the clients -------------------------------------------------------------------------------

export const nbdinfo = (args: readonly string[], o?: ToolOptions): Promise<ToolResult> => runTool('nbdinfo', args, o);
export const nbdcopy = (args: readonly string[], o?: ToolOptions): Promise<ToolResult> => runTool('nbdcopy', args, o);
export const qemuIo = (args: readonly string[], o?: ToolOptions): Promise<ToolResult> => runTool('qemu-io', args, o);
export const qemuImg = (args: readonly string[], o?: ToolOptions): Promise<ToolResult> => runTool('qemu-img', args, o);
/** fio, without the verify state file it would otherwise leave in the working directory. */
export const fio = (args: readonly string[], o?: ToolOptions): Promise<ToolResult> => runTool('fio', ['--verify_state_save=0', ...args], o);
export const qed = (args: readonly string[], o?: ToolOptions): Promise<ToolResult> => runTool(process.execPath, [QED_CLI, ...args], o);

/** `nbdinfo --json URI` parsed (throws with the output when it fails). */
export async function nbdinfoJson(uri: string, extra: readonly string[] = [], o?: ToolOptions): Promise<NbdinfoJson> {
  const r = await toolOk(`nbdinfo --json ${uri}`, nbdinfo(['--json', ...extra, uri], o));
  return JSON.parse(r.stdout) as NbdinfoJson;
}

/** What `nbdinfo --json` prints (the fields the tests read). */
export interface NbdinfoJson {
  protocol: string;
  TLS: boolean;
  exports: Array<{
    'export-name': string;
    description?: string;
    'export-size': number;
    'is_read_only': boolean;
    'can_flush': boolean;
    'can_fua': boolean;
    'can_trim': boolean;
    'can_zero': boolean;
    'can_fast_zero': boolean;
    'can_df': boolean;
    'can_multi_conn': boolean;
    'can_cache': boolean;
    'is_rotational': boolean;
    'block_size_minimum'?: number;
    'block_size_preferred'?: number;
    'block_size_maximum'?: number;
    contexts?: string[];
    [key: string]: unknown;
  }>;
  [key: string]: unknown;
}

/** One line of `nbdinfo --map --json`. */
export interface MapEntry { offset: number; length: number; type: number; description: string }

/** `nbdinfo --map[=CONTEXT] --json URI` parsed. */
export async function nbdinfoMap(uri: string, context?: string, o?: ToolOptions): Promise<MapEntry[]> {
  const r = await toolOk(`nbdinfo --map ${uri}`, nbdinfo([context ? `--map=${context}` : '--map', '--json', uri], o));
  return JSON.parse(r.stdout) as MapEntry[];
}

/**
 * `fio --ioengine=nbd` on an export: the job given as `--name=value` pairs (without the
 * leading dashes), with --output-format=json so results can be read back.
 */
export function fioNbd(uri: string, job: Record<string, string | number>, o?: ToolOptions): Promise<ToolResult> {
  const args = ['--ioengine=nbd', `--uri=${uri}`, '--output-format=json'];
  if (!('name' in job)) args.push('--name=job');
  for (const [k, v] of Object.entries(job)) args.push(`--${k}=${v}`);
  return fio(args, o);
}

/**
 * Run a Python script with Debian's python3-libnbd, as nbdsh does (`python3 -m nbd`), with the
 * implicit handle `h`. `strict: false` turns libnbd's client-side checks off so the script can
 * send what a hostile client would.
 */
export function nbdsh(script: string, o: ToolOptions & { uri?: string; strict?: boolean } = {}): Promise<ToolResult> {
  const prelude = o.strict === false ? 'h.set_strict_mode(0)\n' : '';
  const args = ['-m', 'nbd'];
  // Strict mode must be off before connecting, so the URI is connected from the script.
  const connect = o.uri ? `h.connect_uri(${JSON.stringify(o.uri)})\n` : '';
  args.push('-c', prelude + connect + script);
  return runTool(SYSTEM_PYTHON, args, o);
}

/** The base name a multi-file `qed serve` exports a file under. */
export const exportNameOf = (file: string): string => basename(file);

/** Whether `qed serve` exists in the build yet (the server is being written alongside these tests). */
export async function qedServeAvailable(): Promise<boolean> {
  if (!existsSync(QED_CLI)) return false;
  const r = await runTool(process.execPath, [QED_CLI, 'serve', '--help'], { timeoutMs: 20_000 });
  return r.code === 0 && /serve/.test(r.stdout + r.stderr);
}
