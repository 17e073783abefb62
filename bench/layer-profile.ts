// Per-request CPU cost of each layer of `qed bench`, from two sources that complement each
// other:
//  - `node --cpu-prof` (sampled, main thread only): self time of every frame, summed by the
//    layer its source file belongs to, divided by the number of requests;
//  - `valgrind --tool=callgrind` (counted, all threads, user space only): instructions per
//    request as the difference of two runs of different lengths, so start-up and open cancel
//    out; split by part of the runtime (JIT code, V8 builtins, libuv, libc...). Instruction counts
//    repeat within a fraction of a percent on a busy machine, where timings do not.
//
//   npm run build && node dist/bench/layer-profile.js [--workloads=read-qd1,overwrite-qd32]
//     [--count=50000] [--callgrind] [--callgrind-counts=2000,52000] [--dir=/dev/shm]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isSet, readBenchOptions } from './options.js';

const CLI = fileURLToPath(new URL('../src/cli/qed.cjs', import.meta.url));

interface Workload { name: string; args: string[]; write: boolean }

/** Each workload stays inside one cluster per request: the engine's hot path. */
const WORKLOADS: Workload[] = [
  { name: 'read-qd1', args: ['-d', '1', '-s', '4k'], write: false },
  { name: 'read-qd32', args: ['-d', '32', '-s', '4k', '-S', '64k'], write: false },
  { name: 'overwrite-qd32', args: ['-w', '-d', '32', '-s', '4k', '-S', '64k', '--pattern', '205'], write: true },
];

const LAYERS = ['start-up (module loading, excluded)', 'CLI/bench loop', 'request lifecycle', 'range locks', 'QED lookup', 'I/O layer (JS)', 'libuv/syscall (native)', 'promises/microtasks', 'GC', 'other JS'] as const;
type Layer = typeof LAYERS[number];

function layerOf(url: string, functionName: string): Layer | null {
  if (functionName === '(idle)' || functionName === '(root)') return null;
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)') return 'libuv/syscall (native)';
  if (/^node:internal\/(modules|bootstrap|process\/pre_execution|deps\/cjs-module-lexer)/.test(url) || /^compile/.test(functionName)) return 'start-up (module loading, excluded)';
  if (/\/(cli|ops)\//.test(url)) return 'CLI/bench loop';
  if (/\/engine\/(checked-device|device)\.js$/.test(url)) return 'request lifecycle';
  if (/\/engine\/(range-locks|gate)\.js$/.test(url)) return 'range locks';
  if (/\/(engine|format|base)\//.test(url)) return 'QED lookup';
  if (/\/io\//.test(url) || /^node:(internal\/)?fs/.test(url)) return 'I/O layer (JS)';
  if (url === '') return functionName === 'runMicrotasks' ? 'promises/microtasks' : 'libuv/syscall (native)';
  if (/task_queues|promises|async_hooks/.test(url)) return 'promises/microtasks';
  return 'other JS';
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string } }>;
  samples: number[];
  timeDeltas: number[];
}

/** Self microseconds per layer over the whole profile. */
function layerTimes(profile: CpuProfile): Map<Layer, number> {
  const byNode = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const out = new Map<Layer, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const frame = byNode.get(profile.samples[i]!)!;
    const layer = layerOf(frame.url, frame.functionName);
    if (layer) out.set(layer, (out.get(layer) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  return out;
}

function run(program: string, args: string[]): string {
  const r = spawnSync(program, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${program} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout + r.stderr;
}

function makeImage(path: string): void {
  run('qemu-img', ['create', '-q', '-f', 'qed', path, '1G']);
  run('qemu-img', ['bench', '-w', '-f', 'qed', '-t', 'writeback', '-c', '16384', '-s', '65536', '-d', '16', '--pattern=205', path]);
}

function profileLayers(w: Workload, image: string, count: number, dir: string): Map<Layer, number> {
  const profDir = join(dir, `prof-${w.name}`);
  run(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${profDir}`, CLI, 'bench', '-c', String(count), ...w.args, image]);
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'))!;
  const times = layerTimes(JSON.parse(readFileSync(join(profDir, file), 'utf8')) as CpuProfile);
  rmSync(profDir, { recursive: true });
  return times;
}

/** Instructions by part of the runtime for one run under callgrind. */
function callgrindByPart(w: Workload, image: string, count: number, dir: string): Map<string, number> {
  const out = join(dir, `cg-${w.name}-${count}.out`);
  // --single-threaded: V8 compiles and collects on the main thread, so two runs differ by
  // their requests, not by when a background compile happened to run.
  run('valgrind', ['--tool=callgrind', '--smc-check=all-non-file', `--callgrind-out-file=${out}`, '--dump-instr=no',
    process.execPath, '--single-threaded', CLI, 'bench', '-c', String(count), ...w.args, image]);
  const text = run('callgrind_annotate', ['--inclusive=no', '--threshold=100', out]);
  rmSync(out);
  const byPart = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?)(?:\s+\[(.*)\])?$/.exec(line);
    if (!m || !m[2]!.includes(':') || m[2]!.startsWith('PROGRAM')) continue;
    const part = partOf(m[2]!, m[3] ?? '');
    byPart.set(part, (byPart.get(part) ?? 0) + Number(m[1]!.replace(/,/g, '')));
  }
  return byPart;
}

const PARTS = ['JIT-compiled JS (no symbols)', 'V8 builtins (interpreter, promises, calls into C++)', 'V8 runtime', 'V8 compiler', 'V8 garbage collector',
  'node bindings (fs, addon)', 'libuv', 'libc (syscall wrappers, memcpy, malloc, locks)', 'start-up only (OpenSSL, parser, snapshot)', 'other'];

function partOf(fileFunction: string, object: string): string {
  const fn = fileFunction.slice(fileFunction.indexOf(':') + 1);
  if (object === '' || object === '???') return PARTS[0]!;
  if (/libc[.-]|ld-linux/.test(object)) return PARTS[7]!;
  if (/^Builtins_/.test(fn)) return PARTS[1]!;
  if (/^(ossl|OPENSSL|EVP|CRYPTO|Cr_z|detail::sprp)|Scanner|Parser|AstValue|Deserializer|Utf16CharacterStream/.test(fn)) return PARTS[8]!;
  if (/v8::internal::compiler|v8::internal::maglev|Baseline/.test(fn)) return PARTS[3]!;
  if (/Heap|Scaveng|Mark|Sweep|Evacuat|GC|Remembered|Slot/.test(fn)) return PARTS[4]!;
  if (/^uv_|^uv__/.test(fn)) return PARTS[6]!;
  if (/^node::/.test(fn) || /qed_native/.test(object)) return PARTS[5]!;
  if (/v8::/.test(fn)) return PARTS[2]!;
  return PARTS[9]!;
}

const opts = readBenchOptions(['workloads', 'count', 'callgrind', 'callgrind-counts', 'dir']);
const count = Number(opts.get('count') ?? 50000);
const wanted = (opts.get('workloads') ?? WORKLOADS.map((w) => w.name).join(',')).split(',');
const [cgSmall, cgLarge] = (opts.get('callgrind-counts') ?? '2000,52000').split(',').map(Number) as [number, number];
const dir = mkdtempSync(join(opts.get('dir') ?? '/dev/shm', 'qed-layer-profile-'));
try {
  const readImage = join(dir, 'read.qed');
  makeImage(readImage);
  for (const w of WORKLOADS.filter((x) => wanted.includes(x.name))) {
    const image = w.write ? join(dir, 'write.qed') : readImage;
    if (w.write && !existsSync(image)) makeImage(image);
    const times = profileLayers(w, image, count, dir);
    let total = 0;
    for (const [layer, v] of times) if (layer !== LAYERS[0]) total += v;
    console.log(`\n${w.name}: qed bench -c ${count} ${w.args.join(' ')} (cpu-prof, main thread, self time per request)`);
    console.log('| layer | µs/request | share |');
    console.log('|---|---:|---:|');
    for (const layer of LAYERS) {
      const us = times.get(layer) ?? 0;
      console.log(`| ${layer} | ${(us / count).toFixed(2)} | ${((100 * us) / total).toFixed(0)} % |`);
    }
    console.log(`| total busy | ${(total / count).toFixed(2)} | |`);
    if (!isSet(opts, 'callgrind')) continue;
    const small = callgrindByPart(w, image, cgSmall, dir);
    const large = callgrindByPart(w, image, cgLarge, dir);
    console.log(`\n${w.name}: instructions per request (callgrind, all threads, user space; runs of ${cgSmall} and ${cgLarge} requests differenced)`);
    console.log('| part | instructions/request |');
    console.log('|---|---:|');
    let sum = 0;
    for (const part of PARTS) {
      const per = ((large.get(part) ?? 0) - (small.get(part) ?? 0)) / (cgLarge - cgSmall);
      sum += per;
      console.log(`| ${part} | ${per.toFixed(0)} |`);
    }
    console.log(`| total | ${sum.toFixed(0)} |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
