// The rows of issue 16, side by side in one run: `qed bench` against `qemu-img bench` on the
// same QED images, fio (psync and io_uring) on the same file as the machine's limit, and
// `qed convert` against `qemu-img convert -O qed` as whole processes, and convert and compare
// of an empty 64 TiB image (cost that must follow the data, not the virtual size).
//
//   npm run bench                                  # = npm run build && node dist/bench/tool-bench.js
//   node dist/bench/tool-bench.js --rounds=3 --only=read --convert-size=4G --dir=/dev/shm
//   node dist/bench/tool-bench.js --quick          # smoke run: 1 round, small counts, 256 MiB convert
//
// Method. Contenders alternate A B B A in every round (ours, QEMU, QEMU, ours), then fio
// psync and io_uring; the table shows medians. Bench rows use the time each tool reports for
// its requests ("Run completed in"), which leaves out process start and image open for both;
// convert rows time whole processes, spawn to exit, Node's start-up included. Reads run on
// one fully written 1 GiB image (64 KiB clusters) opened read-only; overwrites on a second
// written image; allocating writes on a fresh empty image per run, where every request
// allocates a cluster. fio reads the read image's file as a flat file, overwrites a written
// copy of it, and writes the allocating workload into a fresh sparse file: the same bytes
// moved without a format. Every convert output is compared with its source (qemu-img
// compare) and checked (qemu-img check) in the first round. Images live on tmpfs.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isSet, readBenchOptions } from './options.js';
import { prng } from './workload.js';

const CLI = fileURLToPath(new URL('../src/cli/qed.cjs', import.meta.url));
const GiB = 2 ** 30;
const MiB = 2 ** 20;

interface BenchRow {
  name: string;
  /** qemu-img bench / qed bench arguments (the same for both). */
  args: string[];
  count: number;
  bufferSize: number;
  /** The image: the shared read image, the overwrite image, or a fresh empty one per run. */
  image: 'read' | 'overwrite' | 'fresh';
  /** fio's equivalent: rw, and the queue depth io_uring gets. */
  fio: { rw: string; depth: number; write: boolean };
}

function rows(quick: boolean): BenchRow[] {
  const n = (full: number) => (quick ? Math.ceil(full / 10) : full);
  return [
    { name: 'read 4k qd1', args: ['-d', '1', '-s', '4k'], count: n(100000), bufferSize: 4096, image: 'read', fio: { rw: 'read', depth: 1, write: false } },
    { name: 'read 4k qd32 (64k stride)', args: ['-d', '32', '-s', '4k', '-S', '64k'], count: n(200000), bufferSize: 4096, image: 'read', fio: { rw: 'read:60k', depth: 32, write: false } },
    { name: 'read 64k qd16', args: ['-d', '16', '-s', '64k'], count: n(32768), bufferSize: 65536, image: 'read', fio: { rw: 'read', depth: 16, write: false } },
    { name: 'overwrite 4k qd32 (64k stride)', args: ['-w', '-d', '32', '-s', '4k', '-S', '64k', '--pattern=205'], count: n(200000), bufferSize: 4096, image: 'overwrite', fio: { rw: 'write:60k', depth: 32, write: true } },
    { name: 'allocating write 4k qd32 (64k stride)', args: ['-w', '-d', '32', '-s', '4k', '-S', '64k', '--pattern=205'], count: n(16384), bufferSize: 4096, image: 'fresh', fio: { rw: 'write:60k', depth: 32, write: true } },
  ];
}

function run(program: string, args: string[]): string {
  const r = spawnSync(program, args, { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.status !== 0) throw new Error(`${program} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Seconds the tool reports for its requests. */
function reportedSeconds(output: string): number {
  const m = /Run completed in ([\d.]+) seconds/.exec(output);
  if (!m) throw new Error(`no time in: ${output}`);
  return Number(m[1]);
}

function benchOnce(who: 'ours' | 'qemu', row: BenchRow, image: string): number {
  const args = ['bench', '-c', String(row.count), ...row.args, image];
  if (who === 'ours') return reportedSeconds(run(process.execPath, [CLI, ...args]));
  return reportedSeconds(run('qemu-img', ['bench', '-f', 'qed', '-t', 'writeback', ...args.slice(1)]));
}

/** fio's IOPS on the same file; null when the engine is refused here (the reason is kept). */
function fioIops(engine: 'psync' | 'io_uring', row: BenchRow, file: string, refusals: Map<string, string>): number | null {
  const r = spawnSync('fio', ['--name=limit', `--filename=${file}`, `--ioengine=${engine}`, `--rw=${row.fio.rw}`,
    `--bs=${row.bufferSize}`, `--iodepth=${engine === 'psync' ? 1 : row.fio.depth}`, `--number_ios=${row.count}`,
    '--size=1g', '--output-format=json', ...(row.fio.write ? [] : ['--readonly'])], { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.status !== 0) { refusals.set(engine, (r.stderr || r.stdout).trim().split('\n')[0] ?? `exit ${r.status}`); return null; }
  const job = (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: Array<Record<'read' | 'write', { iops: number }>> }).jobs[0]!;
  return (row.fio.write ? job.write : job.read).iops;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function fmt(x: number | null, digits = 0): string { return x === null ? 'refused' : x.toFixed(digits); }

// ---- images ---------------------------------------------------------------------------

function writtenImage(path: string): void {
  run('qemu-img', ['create', '-q', '-f', 'qed', path, '1G']);
  run('qemu-img', ['bench', '-w', '-f', 'qed', '-t', 'writeback', '-c', '16384', '-s', '65536', '-d', '16', '--pattern=205', path]);
}

function freshImage(path: string): void {
  rmSync(path, { force: true });
  run('qemu-img', ['create', '-q', '-f', 'qed', path, '1G']);
}

function freshSparse(path: string): void {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, GiB);
  closeSync(fd);
}

/**
 * Convert sources. `holes`: 1 MiB of random data, then a 1 MiB hole, over the whole size.
 * Otherwise fully allocated, 1 MiB pieces of random data, zeros, and zeros with a few 4 KiB
 * data blocks, a third each (zeros in data must be found by reading them).
 */
function convertSource(path: string, size: number, holes: boolean): void {
  const next = prng(holes ? 16 : 61);
  const fd = openSync(path, 'w');
  const random = Buffer.alloc(MiB);
  for (let i = 0; i < random.length; i += 4) random.writeUInt32LE(Math.floor(next() * 2 ** 32), i);
  const piece = Buffer.alloc(MiB);
  for (let off = 0, k = 0; off < size; off += MiB, k++) {
    random.writeUInt32LE(k, 0); // no two data pieces alike
    if (holes) {
      if (k % 2 === 0) writeSync(fd, random, 0, MiB, off);
      continue;
    }
    const kind = next();
    if (kind < 0.34) { writeSync(fd, random, 0, MiB, off); continue; }
    piece.fill(0);
    if (kind < 0.67) for (let b = 0; b < 4; b++) piece.fill(1 + b, Math.floor(next() * 255) * 4096, Math.floor(next() * 255) * 4096 + 4096);
    writeSync(fd, piece, 0, MiB, off);
  }
  ftruncateSync(fd, size);
  closeSync(fd);
}

function convertOnce(who: 'ours' | 'qemu', source: string, out: string): number {
  rmSync(out, { force: true });
  const args = ['convert', '-f', 'raw', '-O', 'qed', source, out];
  const started = performance.now();
  if (who === 'ours') run(process.execPath, [CLI, ...args]); else run('qemu-img', args);
  return (performance.now() - started) / 1000;
}

/**
 * Walking empty space: `convert -f qed -O qed` and `compare` of an empty 64 TiB QED image
 * (32,768 unallocated L1 entries), whole processes, A B B A. Both tools' time is mostly
 * start-up; what grows with the virtual size shows as the difference from the start-up row.
 */
function emptyImageRows(dir: string, rounds: number): string[] {
  const empty = join(dir, 'empty-64t.qed');
  const other = join(dir, 'empty-64t-b.qed');
  run('qemu-img', ['create', '-q', '-f', 'qed', empty, '64T']);
  run('qemu-img', ['create', '-q', '-f', 'qed', other, '64T']);
  const out = join(dir, 'empty-out.qed');
  const jobs: Array<{ name: string; args: string[]; before?: () => void }> = [
    { name: 'convert -f qed -O qed', args: ['convert', '-f', 'qed', '-O', 'qed', empty, out], before: () => rmSync(out, { force: true }) },
    { name: 'compare', args: ['compare', empty, other] },
  ];
  const lines = [
    '| empty 64 TiB QED image, whole processes | qed s | qemu-img s | ours/QEMU (speed) | samples ours | samples QEMU |',
    '|---|---:|---:|---:|---|---|',
  ];
  for (const job of jobs) {
    const samples = { ours: [] as number[], qemu: [] as number[] };
    for (let round = 0; round < rounds * 2; round++) {
      for (const who of ['ours', 'qemu', 'qemu', 'ours'] as const) {
        job.before?.();
        const started = performance.now();
        if (who === 'ours') run(process.execPath, [CLI, ...job.args]); else run('qemu-img', job.args);
        samples[who].push((performance.now() - started) / 1000);
      }
    }
    const o = median(samples.ours);
    const q = median(samples.qemu);
    lines.push(`| ${job.name} | ${o.toFixed(3)} | ${q.toFixed(3)} | ${(q / o).toFixed(2)} | ${samples.ours.map((x) => x.toFixed(3)).join(' ')} | ${samples.qemu.map((x) => x.toFixed(3)).join(' ')} |`);
  }
  rmSync(empty); rmSync(other); rmSync(out, { force: true });
  return lines;
}

/**
 * Process start-up alone: `qed --version` against `qemu-img --version`, spawn to exit. Node
 * parses every certificate named by NODE_EXTRA_CA_CERTS before running any script; where the
 * environment sets it (some sandboxes point it at the whole system bundle), ours is also
 * timed without it, since that cost is the environment's, not the tool's.
 */
function startupRow(rounds: number): string {
  const time = (program: string, args: string[], env: NodeJS.ProcessEnv = process.env): number => {
    const t = performance.now();
    const r = spawnSync(program, args, { env, stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`${program} ${args.join(' ')} failed`);
    return (performance.now() - t) / 1000;
  };
  const withoutCerts = { ...process.env };
  delete withoutCerts.NODE_EXTRA_CA_CERTS;
  const samples = { ours: [] as number[], bare: [] as number[], qemu: [] as number[] };
  for (let i = 0; i < 5 * rounds; i++) {
    samples.ours.push(time(process.execPath, [CLI, '--version']));
    samples.qemu.push(time('qemu-img', ['--version']));
    samples.bare.push(time(process.execPath, [CLI, '--version'], withoutCerts));
  }
  const certs = process.env.NODE_EXTRA_CA_CERTS ? `NODE_EXTRA_CA_CERTS set (${process.env.NODE_EXTRA_CA_CERTS})` : 'NODE_EXTRA_CA_CERTS not set';
  return `start-up, medians of ${samples.ours.length}: qed --version ${median(samples.ours).toFixed(3)} s (${certs}), without NODE_EXTRA_CA_CERTS ${median(samples.bare).toFixed(3)} s; qemu-img --version ${median(samples.qemu).toFixed(3)} s`;
}

// ---- main -----------------------------------------------------------------------------

const opts = readBenchOptions(['rounds', 'only', 'dir', 'quick', 'convert-size']);
const quick = isSet(opts, 'quick');
const rounds = Number(opts.get('rounds') ?? (quick ? 1 : 3));
const only = opts.get('only') ?? '';
const convertSize = Number(opts.get('convert-size')?.replace(/G$/i, '') ?? (quick ? 0.25 : 4)) * GiB;
const dir = mkdtempSync(join(opts.get('dir') ?? '/dev/shm', 'qed-tool-bench-'));
const started = new Date();
const loadBefore = loadavg().map((x) => x.toFixed(2)).join(' ');
const output: string[] = [];
try {
  const readImage = join(dir, 'read.qed');
  const overwriteImage = join(dir, 'overwrite.qed');
  writtenImage(readImage);
  writtenImage(overwriteImage);
  const fioOverwrite = join(dir, 'fio-overwrite.bin');
  execFileSync('cp', [readImage, fioOverwrite]);
  const refusals = new Map<string, string>();
  output.push('| workload | unit | qed bench | qemu-img bench | ours/QEMU | fio psync | fio io_uring | ours/best fio | QEMU/best fio | samples ours (s) | samples QEMU (s) |');
  output.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|');
  for (const row of rows(quick).filter((r) => r.name.includes(only))) {
    const samples = { ours: [] as number[], qemu: [] as number[] };
    const fio = { psync: [] as number[], io_uring: [] as number[] };
    for (let round = 0; round < rounds; round++) {
      for (const who of ['ours', 'qemu', 'qemu', 'ours'] as const) {
        let image = row.image === 'read' ? readImage : overwriteImage;
        if (row.image === 'fresh') { image = join(dir, 'fresh.qed'); freshImage(image); }
        samples[who].push(benchOnce(who, row, image));
      }
      for (const engine of ['psync', 'io_uring'] as const) {
        let file = row.image === 'read' ? readImage : fioOverwrite;
        if (row.image === 'fresh') { file = join(dir, 'fresh.bin'); rmSync(file, { force: true }); freshSparse(file); }
        const iops = fioIops(engine, row, file, refusals);
        if (iops !== null) fio[engine].push(iops);
      }
    }
    const oursIops = row.count / median(samples.ours);
    const qemuIops = row.count / median(samples.qemu);
    const psync = fio.psync.length ? median(fio.psync) : null;
    const uring = fio.io_uring.length ? median(fio.io_uring) : null;
    const best = Math.max(psync ?? 0, uring ?? 0);
    output.push(`| ${row.name} | IOPS | ${fmt(oursIops)} | ${fmt(qemuIops)} | ${(oursIops / qemuIops).toFixed(2)} | ${fmt(psync)} | ${fmt(uring)} | ${best ? (oursIops / best).toFixed(2) : '-'} | ${best ? (qemuIops / best).toFixed(2) : '-'} | ${samples.ours.map((x) => x.toFixed(3)).join(' ')} | ${samples.qemu.map((x) => x.toFixed(3)).join(' ')} |`);
    console.log(output[output.length - 1]);
  }
  for (const [engine, why] of refusals) output.push(`fio ${engine} refused here: ${why}`);
  rmSync(readImage); rmSync(overwriteImage); rmSync(fioOverwrite);
  if (convertSize > 0 && (only === '' || 'convert'.includes(only) || only.startsWith('convert'))) {
    output.push('');
    output.push('| convert -O qed, whole processes | source MiB | qed convert s | qemu-img convert s | ours/QEMU (speed) | samples ours | samples QEMU |');
    output.push('|---|---:|---:|---:|---:|---|---|');
    for (const holes of [true, false]) {
      const source = join(dir, 'source.raw');
      convertSource(source, convertSize, holes);
      const samples = { ours: [] as number[], qemu: [] as number[] };
      for (let round = 0; round < rounds; round++) {
        for (const who of ['ours', 'qemu', 'qemu', 'ours'] as const) {
          const out = join(dir, `${who}.qed`);
          samples[who].push(convertOnce(who, source, out));
          if (round === 0) {
            execFileSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'qed', source, out]);
            execFileSync('qemu-img', ['check', '-q', out]);
          }
          rmSync(out);
        }
      }
      const o = median(samples.ours);
      const q = median(samples.qemu);
      output.push(`| ${holes ? 'raw, half of it holes' : 'raw, no holes (data, zeros, mostly zeros)'} | ${convertSize / MiB} | ${o.toFixed(3)} | ${q.toFixed(3)} | ${(q / o).toFixed(2)} | ${samples.ours.map((x) => x.toFixed(2)).join(' ')} | ${samples.qemu.map((x) => x.toFixed(2)).join(' ')} |`);
      console.log(output[output.length - 1]);
      rmSync(source);
    }
  }
  if (only === '' || 'empty'.includes(only) || only.startsWith('empty')) {
    output.push('');
    output.push(...emptyImageRows(dir, rounds));
    console.log(output.slice(-4).join('\n'));
  }
  output.push('');
  output.push(startupRow(rounds));
  const versions = [process.version, run('qemu-img', ['--version']).split('\n')[0], run('fio', ['--version']).trim()].join('; ');
  console.log(`\nstarted ${started.toISOString()}, took ${((Date.now() - started.getTime()) / 1000).toFixed(0)} s, ${rounds} round(s) of A B B A; load average before ${loadBefore}, after ${loadavg().map((x) => x.toFixed(2)).join(' ')}; ${versions}\n`);
  console.log(output.join('\n'));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
