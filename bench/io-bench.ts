// The I/O benchmark: our engine against QEMU on the same images, QED and the raw-file limit.
//
//   npm run bench:engine                # full run (5 rounds, 1 GiB, 20,000 random ops; ~5 min)
//   npm run bench:engine -- --quick     # smoke run (1 round, 128 MiB, 2,000 random ops)
//   node dist/bench/io-bench.js --rounds=5 --only=rand-write --depths=1,16
//
// Options (also as environment variables BENCH_<NAME>, e.g. BENCH_ROUNDS=5):
//   --rounds=N      rounds (default 5); each round runs every case as ours, QEMU, QEMU, ours (A B B A)
//   --size=BYTES    image size (default 1 GiB); suffixes k, M, G
//   --seq-req=BYTES sequential request size (default 64 KiB)
//   --rand-ops=N    random 4 KiB requests per run (default 20,000)
//   --depths=LIST   queue depths (default 1,16)
//   --only=TEXT     run only cases whose name contains TEXT (e.g. rand-write, raw, qed)
//   --dir=PATH      scratch directory (default /dev/shm/qed-bench-<pid>; tmpfs on purpose)
//   --json=PATH     also write every sample as JSON
//   --quick         1 round, 128 MiB, 2,000 random ops
//
// Method. Every contender runs as its own process and is timed the same way: wall clock from
// spawn to exit, minus the median of an empty run of the same tool (open, flush, close), so
// process start and image open cancel out for both. Ours is dist/bench/worker.js; QEMU is
// `qemu-img bench` for sequential I/O (sliding window of -d requests) and `qemu-io` with a
// generated script on stdin for random I/O (QD1: `write -q`/`read -q` lines; QD>1: batches of
// `aio_write -q`/`aio_read -q` lines followed by `aio_flush`, which waits for them; ours does
// the same batches). Every write run ends with a flush and a close, both contenders, with
// cache mode writeback. Reads run read-only on one shared, fully written image per format.
// Write runs start from a fresh empty image, which is checked afterwards (allocated clusters
// or bytes), so a contender that silently skipped work fails.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomOffsets, type Job, type WorkloadKind } from './workload.js';
import { isSet, readBenchOptions } from './options.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const WORKER = join(HERE, 'worker.js');
const TIME = '/usr/bin/time';
const PATTERN = 0xcd;
const RAND_REQ = 4096;
const WRITE_SEED = 1;
const READ_SEED = 2;

type Format = 'qed' | 'raw';
type Tool = 'ours' | 'qemu';
type Kind = Exclude<WorkloadKind, 'none'>;

interface Config {
  rounds: number;
  size: number;
  seqReq: number;
  randOps: number;
  depths: number[];
  only: string | null;
  dir: string;
  json: string | null;
  quick: boolean;
}

interface Case { name: string; kind: Kind; format: Format; depth: number }

interface Sample { wallMs: number; cpuMs: number; internalMs: number | null }

// ---- configuration -------------------------------------------------------------------

function parseSize(text: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(text.trim());
  if (!m) throw new Error(`bad size '${text}'`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * mult;
}

function config(): Config {
  const opts = readBenchOptions(['rounds', 'size', 'seq-req', 'rand-ops', 'depths', 'only', 'dir', 'json', 'quick']);
  const quick = isSet(opts, 'quick');
  return {
    quick,
    rounds: Number(opts.get('rounds') ?? (quick ? 1 : 5)),
    size: parseSize(opts.get('size') ?? (quick ? '128M' : '1G')),
    seqReq: parseSize(opts.get('seq-req') ?? '64k'),
    randOps: Number(opts.get('rand-ops') ?? (quick ? 2000 : 20000)),
    depths: (opts.get('depths') ?? '1,16').split(',').map(Number),
    only: opts.get('only') ?? null,
    dir: opts.get('dir') ?? `/dev/shm/qed-bench-${process.pid}`,
    json: opts.get('json') ?? null,
  };
}

// ---- processes -----------------------------------------------------------------------

interface Command { cmd: string; args: string[]; stdin: string | null }

/** Run a command under /usr/bin/time; wall clock from spawn to exit, CPU as user + system. */
function timed(c: Command, scratch: string): Promise<{ wallMs: number; cpuMs: number; stdout: string }> {
  const timeFile = join(scratch, 'time.out');
  const outFile = join(scratch, 'stdout.out');
  const stdinFd = c.stdin ? openSync(c.stdin, 'r') : 'ignore';
  const outFd = openSync(outFile, 'w');
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(TIME, ['-f', '%U %S', '-o', timeFile, c.cmd, ...c.args], { stdio: [stdinFd, outFd, 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      const wallMs = Number(process.hrtime.bigint() - start) / 1e6;
      if (typeof stdinFd === 'number') closeSync(stdinFd);
      closeSync(outFd);
      const stdout = readFileSync(outFile, 'utf8');
      if (code !== 0 || stderr.trim() !== '') {
        reject(new Error(`${c.cmd} ${c.args.join(' ')} failed (exit ${code}): ${stderr.trim() || stdout.slice(-500)}`));
        return;
      }
      const [user, sys] = readFileSync(timeFile, 'utf8').trim().split(/\s+/).slice(-2).map(Number);
      resolve({ wallMs, cpuMs: (user! + sys!) * 1000, stdout });
    });
  });
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

// ---- the contenders ------------------------------------------------------------------

class Bench {
  readonly cases: Case[] = [];
  readonly samples = new Map<string, Sample[]>();
  readonly readImage: Record<Format, string>;
  private readonly scripts = new Map<string, string>();

  constructor(readonly cfg: Config) {
    this.readImage = { qed: join(cfg.dir, 'read.qed'), raw: join(cfg.dir, 'read.raw') };
    for (const kind of ['seq-write', 'seq-read', 'rand-write', 'rand-read'] as Kind[]) {
      for (const depth of cfg.depths) {
        for (const format of ['qed', 'raw'] as Format[]) {
          const name = `${kind} qd${depth} ${format}`;
          if (cfg.only && !name.includes(cfg.only)) continue;
          this.cases.push({ name, kind, format, depth });
        }
      }
    }
  }

  job(kind: WorkloadKind, format: Format, depth: number, path: string): Job {
    const seq = kind === 'seq-write' || kind === 'seq-read';
    return {
      kind, format, path, depth, pattern: PATTERN,
      req: seq ? this.cfg.seqReq : RAND_REQ,
      count: kind === 'none' ? 0 : seq ? Math.floor(this.cfg.size / this.cfg.seqReq) : this.cfg.randOps,
      seed: kind === 'rand-write' ? WRITE_SEED : READ_SEED,
    };
  }

  /** The qemu-io script for a random job: one request per line; batches plus aio_flush for QD>1. */
  script(job: Job): string {
    const key = `${job.kind}-${job.depth}`;
    const existing = this.scripts.get(key);
    if (existing) return existing;
    const write = job.kind === 'rand-write';
    const offsets = randomOffsets(job.seed, job.count, this.cfg.size, job.req);
    const lines: string[] = [];
    offsets.forEach((off, i) => {
      if (job.depth === 1) lines.push(`${write ? 'write' : 'read'} -q ${off} ${job.req}`);
      else {
        lines.push(`${write ? 'aio_write' : 'aio_read'} -q ${off} ${job.req}`);
        if ((i + 1) % job.depth === 0 || i === offsets.length - 1) lines.push('aio_flush');
      }
    });
    if (write) lines.push('flush');
    const path = join(this.cfg.dir, `${key}.qemu-io`);
    writeFileSync(path, lines.join('\n') + '\n');
    this.scripts.set(key, path);
    return path;
  }

  command(tool: Tool, job: Job, qemuTool: 'qemu-img' | 'qemu-io'): Command {
    if (tool === 'ours') return { cmd: process.execPath, args: [WORKER, JSON.stringify(job)], stdin: null };
    const write = job.kind === 'seq-write' || job.kind === 'rand-write' || job.kind === 'none';
    if (qemuTool === 'qemu-img') {
      const args = ['bench', '-f', job.format, '-t', 'writeback', '-c', String(job.count), '-d', String(job.depth), '-s', String(job.req)];
      if (write) args.push('-w', `--pattern=${job.pattern}`);
      if (write && job.count > 0) args.push(`--flush-interval=${job.count}`);
      return { cmd: 'qemu-img', args: [...args, job.path], stdin: null };
    }
    const args = ['-f', job.format, '-t', 'writeback', ...(write ? [] : ['-r']), job.path];
    let stdin: string;
    if (job.kind === 'none') {
      stdin = join(this.cfg.dir, 'empty.qemu-io');
      writeFileSync(stdin, 'flush\n');
    } else {
      stdin = this.script(job);
    }
    return { cmd: 'qemu-io', args, stdin };
  }

  freshImage(format: Format, path: string): void {
    rmSync(path, { force: true });
    if (format === 'qed') run('qemu-img', ['create', '-q', '-f', 'qed', path, String(this.cfg.size)]);
    else run('truncate', ['-s', String(this.cfg.size), path]);
  }

  /** What a finished write run must have left: every written cluster (qed) or page (raw) allocated. */
  verifyWrite(c: Case, job: Job, path: string): void {
    const unit = c.format === 'qed' ? 65536 : 4096;
    const offsets = c.kind === 'seq-write'
      ? Array.from({ length: job.count }, (_, i) => i * job.req)
      : randomOffsets(job.seed, job.count, this.cfg.size, job.req);
    const units = new Set<number>();
    for (const off of offsets) for (let u = Math.floor(off / unit); u * unit < off + job.req; u++) units.add(u);
    if (c.format === 'qed') {
      const out = spawnSync('qemu-img', ['check', '--output=json', '-f', 'qed', path], { encoding: 'utf8' });
      const info = JSON.parse(out.stdout) as { 'allocated-clusters': number; 'check-errors': number; corruptions?: number; leaks?: number };
      if (out.status !== 0 || info['allocated-clusters'] !== units.size || info['check-errors'] || info.corruptions || info.leaks) {
        throw new Error(`${c.name}: image check after the run failed: ${out.stdout} (expected ${units.size} clusters)`);
      }
    } else {
      const allocated = statSync(path).blocks * 512;
      if (allocated < units.size * unit) throw new Error(`${c.name}: only ${allocated} bytes allocated, expected ${units.size * unit}`);
    }
  }

  async runCase(c: Case, tool: Tool, check: boolean): Promise<void> {
    const write = c.kind === 'seq-write' || c.kind === 'rand-write';
    const path = write ? join(this.cfg.dir, `scratch.${c.format}`) : this.readImage[c.format];
    const job = this.job(c.kind, c.format, c.depth, path);
    const cmd = this.command(tool, job, c.kind.startsWith('seq') ? 'qemu-img' : 'qemu-io');
    if (write) this.freshImage(c.format, path);
    const r = await timed(cmd, this.cfg.dir);
    if (write && check) this.verifyWrite(c, job, path);
    if (write) rmSync(path, { force: true });
    const internalMs = tool === 'ours' ? (JSON.parse(r.stdout) as { internalMs: number }).internalMs : null;
    this.record(`${c.name} ${tool}`, { wallMs: r.wallMs, cpuMs: r.cpuMs, internalMs });
    process.stderr.write(`  ${(`${c.name} ${tool}`).padEnd(28)} ${r.wallMs.toFixed(0).padStart(6)} ms wall ${r.cpuMs.toFixed(0).padStart(6)} ms cpu\n`);
  }

  /** Empty runs (open, flush, close) of each tool, the baseline subtracted from its samples. */
  async runBaselines(): Promise<void> {
    const path = join(this.cfg.dir, 'empty');
    for (const format of ['qed', 'raw'] as Format[]) {
      this.freshImage(format, path);
      const job = this.job('none', format, 1, path);
      const order: Array<[string, Command]> = [
        [`base ours ${format}`, this.command('ours', job, 'qemu-img')],
        [`base qemu-img ${format}`, this.command('qemu', job, 'qemu-img')],
        [`base qemu-io ${format}`, this.command('qemu', job, 'qemu-io')],
      ];
      const abba = [...order, ...order.slice().reverse()];
      for (const [name, cmd] of [...abba, ...abba]) {
        const r = await timed(cmd, this.cfg.dir);
        this.record(name, { wallMs: r.wallMs, cpuMs: r.cpuMs, internalMs: null });
      }
      rmSync(path, { force: true });
    }
  }

  record(name: string, s: Sample): void {
    let list = this.samples.get(name);
    if (!list) this.samples.set(name, list = []);
    list.push(s);
  }

  prepareReadImages(): void {
    const needs = new Set(this.cases.filter((c) => c.kind.endsWith('read')).map((c) => c.format));
    for (const format of needs) {
      const path = this.readImage[format];
      this.freshImage(format, path);
      const count = Math.floor(this.cfg.size / 65536);
      run('qemu-img', ['bench', '-q', '-f', format, '-t', 'writeback', '-w', `--pattern=${PATTERN}`, '-c', String(count), '-s', '65536', '-d', '16', `--flush-interval=${count}`, path]);
    }
  }

  // ---- results ----------------------------------------------------------------------

  baseline(tool: Tool, c: Case): { wallMs: number; bestWallMs: number; cpuMs: number } {
    const name = tool === 'ours' ? `base ours ${c.format}` : `base ${c.kind.startsWith('seq') ? 'qemu-img' : 'qemu-io'} ${c.format}`;
    const list = this.samples.get(name) ?? [];
    return { wallMs: median(list.map((s) => s.wallMs)), bestWallMs: Math.min(...list.map((s) => s.wallMs)), cpuMs: median(list.map((s) => s.cpuMs)) };
  }

  /** Net seconds per run for one contender: median of (wall - baseline). */
  net(c: Case, tool: Tool): { sec: number; bestSec: number; cpuSec: number; internalSec: number | null; n: number } | null {
    const list = this.samples.get(`${c.name} ${tool}`);
    if (!list || list.length === 0) return null;
    const base = this.baseline(tool, c);
    const internal = list.map((s) => s.internalMs).filter((x): x is number => x !== null);
    return {
      sec: median(list.map((s) => s.wallMs - base.wallMs)) / 1000,
      bestSec: (Math.min(...list.map((s) => s.wallMs)) - base.bestWallMs) / 1000,
      cpuSec: median(list.map((s) => s.cpuMs - base.cpuMs)) / 1000,
      internalSec: internal.length ? median(internal) / 1000 : null,
      n: list.length,
    };
  }

  /** MiB/s for sequential cases, IOPS for random. */
  rate(c: Case, sec: number): number {
    const job = this.job(c.kind, c.format, c.depth, '');
    return c.kind.startsWith('seq') ? (job.count * job.req) / 1048576 / sec : job.count / sec;
  }

  report(): string {
    const out: string[] = [];
    const fmt = (x: number | null): string => x === null || !Number.isFinite(x) ? '—' : x >= 100 ? x.toFixed(0) : x.toFixed(1);
    const ratio = (a: number | null, b: number | null): string => a === null || b === null ? '—' : (a / b).toFixed(2);
    out.push('| workload | QD | unit | ours qed | QEMU qed | ours/QEMU | ours/QEMU by CPU | ours raw | QEMU raw | ours raw/QEMU raw | ours qed/raw limit | QEMU qed/raw limit |');
    out.push('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    const kinds = [...new Set(this.cases.map((c) => c.kind))];
    for (const kind of kinds) {
      for (const depth of this.cfg.depths) {
        const get = (format: Format, tool: Tool): number | null => {
          const c = this.cases.find((x) => x.kind === kind && x.depth === depth && x.format === format);
          const n = c && this.net(c, tool);
          return c && n && n.sec > 0 ? this.rate(c, n.sec) : null; // at or below the noise: '—'
        };
        if (!this.cases.some((x) => x.kind === kind && x.depth === depth)) continue;
        const oq = get('qed', 'ours'); const qq = get('qed', 'qemu');
        const qedCase = this.cases.find((x) => x.kind === kind && x.depth === depth && x.format === 'qed');
        const oc = qedCase ? this.net(qedCase, 'ours') : null; const qc = qedCase ? this.net(qedCase, 'qemu') : null;
        const cpuRatio = oc && qc && oc.cpuSec > 0 ? (qc.cpuSec / oc.cpuSec).toFixed(2) : '—';
        const or = get('raw', 'ours'); const qr = get('raw', 'qemu');
        const limit = or === null && qr === null ? null : Math.max(or ?? 0, qr ?? 0);
        out.push(`| ${kind} | ${depth} | ${kind.startsWith('seq') ? 'MiB/s' : 'IOPS'} | ${fmt(oq)} | ${fmt(qq)} | ${ratio(oq, qq)} | ${cpuRatio} | ${fmt(or)} | ${fmt(qr)} | ${ratio(or, qr)} | ${ratio(oq, limit)} | ${ratio(qq, limit)} |`);
      }
    }
    out.push('');
    out.push('Seconds per run: net wall (median of the samples minus the median empty run; best sample minus the best empty run), the in-process time of ours');
    out.push('(open to close, measured inside the worker; median), and CPU time (user + system of all threads, minus the');
    out.push('empty run; median). "best ratio" is ours/QEMU throughput from the best samples.');
    out.push('');
    out.push('| case | ours wall s | ours best s | ours in-process s | ours CPU s | QEMU wall s | QEMU best s | QEMU CPU s | best ratio | samples |');
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    const s3 = (x: number | undefined | null): string => x == null ? '—' : x.toFixed(3);
    for (const c of this.cases) {
      const o = this.net(c, 'ours'); const q = this.net(c, 'qemu');
      out.push(`| ${c.name} | ${s3(o?.sec)} | ${s3(o?.bestSec)} | ${s3(o?.internalSec)} | ${s3(o?.cpuSec)} | ${s3(q?.sec)} | ${s3(q?.bestSec)} | ${s3(q?.cpuSec)} | ${o && q ? (q.bestSec / o.bestSec).toFixed(2) : '—'} | ${o?.n ?? 0}+${q?.n ?? 0} |`);
    }
    out.push('');
    out.push('Empty-run baselines (median wall / CPU ms): ' + [...this.samples.keys()].filter((k) => k.startsWith('base ')).map((k) => {
      const l = this.samples.get(k)!;
      return `${k.slice(5)} ${median(l.map((s) => s.wallMs)).toFixed(1)} / ${median(l.map((s) => s.cpuMs)).toFixed(0)}`;
    }).join('; '));
    return out.join('\n');
  }
}

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ---- main ----------------------------------------------------------------------------

async function main(): Promise<void> {
  const cfg = config();
  if (!existsSync(TIME)) throw new Error(`${TIME} is needed to measure CPU time (apt-get install time)`);
  const qemuVersion = run('qemu-img', ['--version']).split('\n')[0];
  mkdirSync(cfg.dir, { recursive: true });
  const bench = new Bench(cfg);
  const started = Date.now();
  const loadBefore = loadavg().map((x) => x.toFixed(2)).join(' ');
  process.stderr.write(`qed-image io-bench: ${cfg.rounds} round(s), image ${cfg.size} bytes, seq ${cfg.seqReq} B requests, ${cfg.randOps} random 4 KiB ops, depths ${cfg.depths.join(',')}, dir ${cfg.dir}\n`);
  try {
    bench.prepareReadImages();
    for (let round = 1; round <= cfg.rounds; round++) {
      process.stderr.write(`round ${round}/${cfg.rounds} (${((Date.now() - started) / 1000).toFixed(0)} s, load ${loadavg()[0]!.toFixed(2)})\n`);
      await bench.runBaselines();
      for (const c of bench.cases) {
        // A B B A
        await bench.runCase(c, 'ours', round === 1);
        await bench.runCase(c, 'qemu', round === 1);
        await bench.runCase(c, 'qemu', false);
        await bench.runCase(c, 'ours', false);
      }
    }
  } finally {
    rmSync(cfg.dir, { recursive: true, force: true });
  }
  const seconds = (Date.now() - started) / 1000;
  const header = [
    `qed-image io-bench — started ${new Date(started).toISOString()}, took ${seconds.toFixed(0)} s; load average before ${loadBefore}, after ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    `machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), node ${process.version}, ${qemuVersion}`,
    `config: rounds=${cfg.rounds} size=${cfg.size} seq-req=${cfg.seqReq} rand-ops=${cfg.randOps} depths=${cfg.depths.join(',')} dir=tmpfs`,
    'rates from median net wall time (spawn to exit minus the tool\'s empty run); "by CPU" = QEMU CPU seconds / ours (qed);',
    'raw limit = the faster of ours raw and QEMU raw',
    '',
  ];
  const text = header.join('\n') + bench.report() + '\n';
  process.stdout.write(text);
  if (cfg.json) writeFileSync(cfg.json, JSON.stringify({ config: cfg, samples: Object.fromEntries(bench.samples) }, null, 2));
}

main().catch((err: unknown) => {
  process.stderr.write(`io-bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
