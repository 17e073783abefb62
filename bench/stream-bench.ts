// Streams against qemu-img convert, as whole processes on tmpfs, alternating A B B A:
//   export: createReadStream of a 1 GiB QED image piped to a file / to /dev/null,
//           against `qemu-img convert -O raw` of the same image;
//   import: writeImageFromStream of a 1 GiB raw file into a new QED image,
//           against `qemu-img convert -f raw -O qed`.
// Every output is checked against the source with qemu-img compare before its time counts.
//
//   npm run build && node dist/bench/stream-bench.js [--rounds=3] [--size=1G] [--dir=/dev/shm]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeMixedRaw } from './mixed-raw.js';

const args = new Map(process.argv.slice(2).map((a) => {
  const [k, v] = a.replace(/^--/, '').split('=');
  return [k!, v ?? 'true'] as const;
}));
const rounds = Number(args.get('rounds') ?? 3);
const size = Number(/^(\d+)G$/i.exec(args.get('size') ?? '1G')?.[1] ?? 1) * 2 ** 30;
const dir = mkdtempSync(join(args.get('dir') ?? '/dev/shm', 'qed-stream-bench-'));
const tool = fileURLToPath(new URL('./stream-tool.js', import.meta.url));

function timeRun(program: string, argv: string[]): number {
  const started = performance.now();
  const r = spawnSync(program, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${program} ${argv.join(' ')} failed: ${r.stderr}`);
  return performance.now() - started;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

interface Row { name: string; ours: () => number; qemu: () => number }

const raw = join(dir, 'source.raw');
const image = join(dir, 'source.qed');
try {
  writeMixedRaw(raw, size, 20261130);
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qed', raw, image]);
  const out = (name: string) => join(dir, name);
  const same = (a: string, fa: string, b: string, fb: string) => execFileSync('qemu-img', ['compare', '-q', '-f', fa, '-F', fb, a, b]);
  const rows: Row[] = [
    {
      name: 'export 1 GiB QED → raw file (createReadStream piped to fs vs qemu-img convert -O raw)',
      ours: () => { const t = timeRun(process.execPath, [tool, 'export', image, out('ours.raw')]); same(image, 'qed', out('ours.raw'), 'raw'); rmSync(out('ours.raw')); return t; },
      qemu: () => { const t = timeRun('qemu-img', ['convert', '-O', 'raw', image, out('qemu.raw')]); same(image, 'qed', out('qemu.raw'), 'raw'); rmSync(out('qemu.raw')); return t; },
    },
    {
      name: 'export 1 GiB QED → /dev/null (createReadStream vs qemu-img convert -O raw to a file)',
      ours: () => timeRun(process.execPath, [tool, 'export', image, '/dev/null']),
      qemu: () => { const t = timeRun('qemu-img', ['convert', '-O', 'raw', image, out('qemu.raw')]); rmSync(out('qemu.raw')); return t; },
    },
    {
      name: 'import 1 GiB raw → QED (writeImageFromStream vs qemu-img convert -f raw -O qed)',
      ours: () => { const t = timeRun(process.execPath, [tool, 'import', raw, out('ours.qed')]); same(raw, 'raw', out('ours.qed'), 'qed'); rmSync(out('ours.qed')); return t; },
      qemu: () => { const t = timeRun('qemu-img', ['convert', '-f', 'raw', '-O', 'qed', raw, out('qemu.qed')]); same(raw, 'raw', out('qemu.qed'), 'qed'); rmSync(out('qemu.qed')); return t; },
    },
  ];
  console.log(`| workload (${rounds} rounds A B B A, medians, ${dir.startsWith('/dev/shm') ? 'tmpfs' : dir}) | ours (s) | qemu-img (s) | ratio (qemu-img time / ours) |`);
  console.log('|---|---|---|---|');
  for (const row of rows) {
    const samples = { ours: [] as number[], qemu: [] as number[] };
    for (let round = 0; round < rounds; round++) {
      for (const who of ['qemu', 'ours', 'ours', 'qemu'] as const) samples[who].push(row[who]());
    }
    const ours = median(samples.ours) / 1000;
    const qemu = median(samples.qemu) / 1000;
    console.log(`| ${row.name} | ${ours.toFixed(2)} | ${qemu.toFixed(2)} | ${(qemu / ours).toFixed(2)}× |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
