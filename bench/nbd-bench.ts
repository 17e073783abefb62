// The NBD server benchmark: `qed serve` against `qemu-nbd` on copies of the same image, driven
// by the same clients, with nbdkit as the protocol ceiling (a server that does no I/O: the
// `pattern` plugin for reads, whose every byte is data, and `null` for writes).
//
//   npm run bench:nbd                         # 3 rounds, 1 GiB image (~4 min)
//   npm run bench:nbd -- --quick              # 1 round, 256 MiB, fewer requests (~40 s)
//   node dist/bench/nbd-bench.js --rounds=5 --only=randread --tcp --json=/tmp/nbd.json
//
// Options (also as environment variables BENCH_<NAME>):
//   --rounds=N     rounds (default 3); each round runs every case as A B B A (qed, qemu, qemu, qed),
//                  then the ceiling once
//   --size=BYTES   image size (default 1G); suffixes k, M, G
//   --only=TEXT    run only cases whose name contains TEXT
//   --tcp          clients connect over 127.0.0.1 (default: a unix socket)
//   --dir=PATH     scratch directory (default /dev/shm/qed-nbd-bench-<pid>)
//   --json=PATH    also write every sample as JSON
//   --quick        1 round, 256 MiB, a tenth of the requests
//
// Method. For every run a fresh server process is started on its own copy of the image and
// stopped afterwards; only the client's work is timed. fio (`--ioengine=nbd`, one job, libnbd
// underneath) reports its own IOPS and bandwidth for a fixed amount of I/O at fixed offsets
// (randrepeat, one seed), so both contenders see the same requests. nbdcopy is timed wall clock,
// spawn to exit, and includes connecting. Reads run on a fully written image, served read-only
// (so both servers advertise multi-conn and nbdcopy uses 4 connections); writes go into a fresh
// empty image (every 4 KiB random write allocates a cluster there) and end with a flush. After
// the first round's writes, `qemu-img check` must call both images clean with the same number
// of allocated clusters, so a server that skipped work fails the benchmark. Server CPU time is
// read from /proc before the server is stopped.
//
// Only Debian packages are needed: qemu-utils, fio, libnbd-bin, nbdkit.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import {
  QED_CLI, fioNbd, nbdcopy, qedServeAvailable, startNbdkit, startQedServe, startQemuNbd, type Server,
} from '../test/support/nbd-tools.js';
import { isSet, readBenchOptions } from './options.js';

type Contender = 'qed' | 'qemu' | 'ceiling';

interface Config {
  rounds: number;
  size: number;
  only: string | null;
  tcp: boolean;
  dir: string;
  json: string | null;
  quick: boolean;
}

interface Case {
  name: string;
  tool: 'fio' | 'nbdcopy';
  /** fio job parameters (without the engine and the URI). */
  job?: Record<string, string | number>;
  write: boolean;
  unit: 'IOPS' | 'MiB/s';
}

interface Sample { rate: number; serverCpuSec: number | null; seconds: number }

// ---- configuration -------------------------------------------------------------------------

function parseSize(text: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(text.trim());
  if (!m) throw new Error(`bad size '${text}'`);
  return Number(m[1]) * { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
}

function config(): Config {
  const opts = readBenchOptions(['rounds', 'size', 'only', 'tcp', 'dir', 'json', 'quick']);
  const flag = (k: string): boolean => isSet(opts, k);
  const quick = flag('quick');
  return {
    quick,
    rounds: Number(opts.get('rounds') ?? (quick ? 1 : 3)),
    size: parseSize(opts.get('size') ?? (quick ? '256M' : '1G')),
    only: opts.get('only') ?? null,
    tcp: flag('tcp'),
    dir: opts.get('dir') ?? `/dev/shm/qed-nbd-bench-${process.pid}`,
    json: opts.get('json') ?? null,
  };
}

function cases(cfg: Config): Case[] {
  const scale = cfg.quick ? 0.1 : 1;
  const ops = (n: number): string => `${Math.max(1, Math.round(n * scale)) * 4}k`;
  const common = { size: cfg.size, randrepeat: 1, randseed: 20261201, norandommap: 1 };
  const all: Case[] = [
    { name: 'randread 4k qd1', tool: 'fio', write: false, unit: 'IOPS', job: { ...common, rw: 'randread', bs: '4k', iodepth: 1, io_size: ops(20_000) } },
    { name: 'randread 4k qd32', tool: 'fio', write: false, unit: 'IOPS', job: { ...common, rw: 'randread', bs: '4k', iodepth: 32, io_size: ops(100_000) } },
    { name: 'randwrite 4k qd1 alloc', tool: 'fio', write: true, unit: 'IOPS', job: { ...common, rw: 'randwrite', bs: '4k', iodepth: 1, io_size: ops(10_000), end_fsync: 1 } },
    { name: 'randwrite 4k qd32 alloc', tool: 'fio', write: true, unit: 'IOPS', job: { ...common, rw: 'randwrite', bs: '4k', iodepth: 32, io_size: ops(50_000), end_fsync: 1 } },
    { name: 'read 1M qd8', tool: 'fio', write: false, unit: 'MiB/s', job: { ...common, rw: 'read', bs: '1M', iodepth: 8 } },
    { name: 'write 1M qd8', tool: 'fio', write: true, unit: 'MiB/s', job: { ...common, rw: 'write', bs: '1M', iodepth: 8, end_fsync: 1 } },
    { name: 'nbdcopy → null:', tool: 'nbdcopy', write: false, unit: 'MiB/s' },
  ];
  return all.filter((c) => !cfg.only || c.name.includes(cfg.only));
}

// ---- helpers -------------------------------------------------------------------------------

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** utime + stime of a process (and its reaped children) in seconds, from /proc. */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command: state(0) ... utime(11) stime(12) cutime(13) cstime(14), in clock ticks.
    const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    return ticks / 100;
  } catch {
    return null;
  }
}

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ---- the benchmark -------------------------------------------------------------------------

class Bench {
  readonly samples = new Map<string, Sample[]>();
  readonly readImage: Record<'qed' | 'qemu', string>;
  private readonly clusters = new Map<string, number>();

  constructor(readonly cfg: Config, readonly list: Case[]) {
    this.readImage = { qed: join(cfg.dir, 'read-qed.qed'), qemu: join(cfg.dir, 'read-qemu.qed') };
  }

  /** One fully written image (64 KiB clusters, every cluster data), copied once per contender. */
  prepare(): void {
    const base = join(this.cfg.dir, 'read-base.qed');
    run('qemu-img', ['create', '-q', '-f', 'qed', base, String(this.cfg.size)]);
    const count = Math.floor(this.cfg.size / 65536);
    run('qemu-img', ['bench', '-q', '-f', 'qed', '-t', 'writeback', '-w', '--pattern=205', '-c', String(count), '-s', '65536', '-d', '16', `--flush-interval=${count}`, base]);
    copyFileSync(base, this.readImage.qed);
    copyFileSync(base, this.readImage.qemu);
    rmSync(base);
  }

  private async start(who: Contender, c: Case, image: string): Promise<Server> {
    const listen = this.cfg.tcp ? 'tcp' : 'unix';
    const dir = this.cfg.dir;
    const ro = c.write ? [] : ['-r'];
    if (who === 'qed') return startQedServe(null, { files: [image], listen, dir, flags: ['-t', '-e', '8', '-f', 'qed', ...ro] });
    if (who === 'qemu') return startQemuNbd(null, { image, listen, dir, flags: ['-t', '-e', '8', '--cache=writeback', ...ro] });
    // Reads from `pattern` (every byte data, so nothing is skipped as a hole); writes into `null`.
    return startNbdkit(null, { plugin: [c.write ? 'null' : 'pattern', `size=${this.cfg.size}`], listen, dir, flags: ['--threads=16'] });
  }

  async runOne(who: Contender, c: Case, check: boolean): Promise<void> {
    let image = '';
    if (who !== 'ceiling') {
      if (c.write) {
        image = join(this.cfg.dir, `write-${who}.qed`);
        rmSync(image, { force: true });
        run('qemu-img', ['create', '-q', '-f', 'qed', image, String(this.cfg.size)]);
      } else {
        image = this.readImage[who];
      }
    }
    const server = await this.start(who, c, image);
    let sample: Sample;
    try {
      const uri = server.uri();
      if (c.tool === 'fio') {
        const r = await fioNbd(uri, c.job!, { timeoutMs: 600_000 });
        if (r.code !== 0) throw new Error(`fio ${c.name} against ${who} failed (${r.code}): ${r.stderr.slice(-2000)} ${r.stdout.slice(-2000)}`);
        const jobs = (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: Array<Record<'read' | 'write', { iops: number; bw_bytes: number; io_bytes: number; runtime: number }>> }).jobs;
        const side = jobs[0]![c.write ? 'write' : 'read'];
        const expected = parseSize(String(c.job!.io_size ?? this.cfg.size));
        if (side.io_bytes !== expected) throw new Error(`fio ${c.name} against ${who} moved ${side.io_bytes} bytes, expected ${expected}`);
        sample = { rate: c.unit === 'IOPS' ? side.iops : side.bw_bytes / 1048576, serverCpuSec: cpuSeconds(server.pid), seconds: side.runtime / 1000 };
      } else {
        const started = process.hrtime.bigint();
        const r = await nbdcopy([uri, 'null:'], { timeoutMs: 600_000 });
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        if (r.code !== 0) throw new Error(`nbdcopy against ${who} failed (${r.code}): ${r.stderr}`);
        sample = { rate: this.cfg.size / 1048576 / seconds, serverCpuSec: cpuSeconds(server.pid), seconds };
      }
    } finally {
      const stopped = await server.stop('SIGTERM', 30_000);
      if (stopped.killed) process.stderr.write(`  warning: ${who} did not stop on SIGTERM within 30 s (killed)\n`);
    }
    if (c.write && who !== 'ceiling') {
      if (check) this.checkWritten(who, c, image);
      rmSync(image, { force: true });
    }
    const key = `${c.name} ${who}`;
    let l = this.samples.get(key);
    if (!l) this.samples.set(key, l = []);
    l.push(sample);
    process.stderr.write(`  ${key.padEnd(34)} ${sample.rate.toFixed(c.unit === 'IOPS' ? 0 : 1).padStart(9)} ${c.unit.padEnd(5)} ${sample.seconds.toFixed(2).padStart(6)} s  server CPU ${sample.serverCpuSec?.toFixed(2) ?? '?'} s\n`);
  }

  /** After a write run: the image is clean, and both contenders allocated the same clusters. */
  checkWritten(who: Contender, c: Case, image: string): void {
    const out = spawnSync('qemu-img', ['check', '--output=json', '-f', 'qed', image], { encoding: 'utf8' });
    const info = JSON.parse(out.stdout) as { 'allocated-clusters': number; 'check-errors'?: number; corruptions?: number; leaks?: number };
    if (out.status !== 0 || info['check-errors'] || info.corruptions || info.leaks || !(info['allocated-clusters'] > 0)) {
      throw new Error(`${c.name} ${who}: qemu-img check after the run: ${out.stdout || out.stderr}`);
    }
    const other = this.clusters.get(c.name);
    if (other !== undefined && other !== info['allocated-clusters']) {
      throw new Error(`${c.name}: the contenders allocated ${other} and ${info['allocated-clusters']} clusters for the same writes`);
    }
    this.clusters.set(c.name, info['allocated-clusters']);
  }

  report(): string {
    const out: string[] = [];
    const fmt = (x: number): string => !Number.isFinite(x) ? '—' : x >= 100 ? x.toFixed(0) : x.toFixed(1);
    const med = (c: Case, who: Contender): number => median((this.samples.get(`${c.name} ${who}`) ?? []).map((s) => s.rate));
    const cpu = (c: Case, who: Contender): number => median((this.samples.get(`${c.name} ${who}`) ?? []).map((s) => s.serverCpuSec ?? NaN).filter(Number.isFinite));
    out.push('| workload | unit | qed serve | qemu-nbd | qed/qemu | nbdkit ceiling | qed/ceiling | qemu/ceiling | server CPU s qed | server CPU s qemu |');
    out.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of this.list) {
      const q = med(c, 'qed'); const m = med(c, 'qemu'); const n = med(c, 'ceiling');
      const r = (a: number, b: number): string => Number.isFinite(a) && Number.isFinite(b) ? (a / b).toFixed(2) : '—';
      out.push(`| ${c.name} | ${c.unit} | ${fmt(q)} | ${fmt(m)} | ${r(q, m)} | ${fmt(n)} | ${r(q, n)} | ${r(m, n)} | ${fmt(cpu(c, 'qed'))} | ${fmt(cpu(c, 'qemu'))} |`);
    }
    out.push('');
    out.push('Rates are medians over rounds (fio\'s own IOPS or bandwidth; nbdcopy by wall clock including connect).');
    out.push('Ceiling: nbdkit pattern (reads) or null (writes), no storage behind it.');
    out.push('Server CPU: user + system seconds of the server process for the whole run (start, serve, before stop), median.');
    return out.join('\n');
  }
}

// ---- main ----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const cfg = config();
  for (const tool of ['qemu-img', 'qemu-nbd', 'fio', 'nbdcopy', 'nbdkit']) {
    if (spawnSync('which', [tool]).status !== 0) throw new Error(`${tool} is needed (apt-get install qemu-utils fio libnbd-bin nbdkit)`);
  }
  if (!existsSync(QED_CLI) || !await qedServeAvailable()) throw new Error(`'qed serve' is not in this build (${QED_CLI}): run npm run build first`);
  const list = cases(cfg);
  if (list.length === 0) throw new Error(`no case matches --only=${cfg.only}`);
  mkdirSync(cfg.dir, { recursive: true });
  const bench = new Bench(cfg, list);
  const started = Date.now();
  const loadBefore = loadavg().map((x) => x.toFixed(2)).join(' ');
  process.stderr.write(`qed-image nbd-bench: ${cfg.rounds} round(s), image ${cfg.size} bytes, over ${cfg.tcp ? 'TCP 127.0.0.1' : 'a unix socket'}, dir ${cfg.dir}\n`);
  try {
    bench.prepare();
    for (let round = 1; round <= cfg.rounds; round++) {
      process.stderr.write(`round ${round}/${cfg.rounds} (${((Date.now() - started) / 1000).toFixed(0)} s, load ${loadavg()[0]!.toFixed(2)})\n`);
      for (const c of list) {
        const order: Contender[] = ['qed', 'qemu', 'qemu', 'qed'];
        for (const [i, who] of order.entries()) await bench.runOne(who, c, round === 1 && i < 2);
        await bench.runOne('ceiling', c, false);
      }
    }
  } finally {
    rmSync(cfg.dir, { recursive: true, force: true });
  }
  const seconds = (Date.now() - started) / 1000;
  const versions = [run('qemu-nbd', ['--version']).split('\n')[0], run('fio', ['--version']).trim(), run('nbdcopy', ['--version']).split('\n')[0], run('nbdkit', ['--version']).trim()];
  const header = [
    `qed-image nbd-bench — started ${new Date(started).toISOString()}, took ${seconds.toFixed(0)} s; load average before ${loadBefore}, after ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    `machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), node ${process.version}; ${versions.join('; ')}`,
    `config: rounds=${cfg.rounds} size=${cfg.size} transport=${cfg.tcp ? 'tcp' : 'unix'} dir=tmpfs`,
    '',
  ];
  process.stdout.write(header.join('\n') + bench.report() + '\n');
  if (cfg.json) writeFileSync(cfg.json, JSON.stringify({ config: cfg, samples: Object.fromEntries(bench.samples) }, null, 2));
}

main().catch((err: unknown) => {
  process.stderr.write(`nbd-bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
