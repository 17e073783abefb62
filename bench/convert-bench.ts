// Side by side: `qemu-img convert -O qed` against `qed convert -O qed` of the same 1 GiB raw
// image with mixed data and zero runs, on tmpfs. Contenders alternate A B B A; each run's
// output is checked (qemu-img compare with the source, qemu-img check) before it counts.
//
//   npm run build && node dist/bench/convert-bench.js [--rounds=3] [--size=1G] [--dir=/dev/shm]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeMixedRaw } from './mixed-raw.js';

const args = new Map(process.argv.slice(2).map((a) => {
  const [k, v] = a.replace(/^--/, '').split('=');
  return [k!, v ?? 'true'] as const;
}));
const rounds = Number(args.get('rounds') ?? 3);
const size = parseSize(args.get('size') ?? '1G');
const dir = mkdtempSync(join(args.get('dir') ?? '/dev/shm', 'qed-convert-bench-'));
const cli = fileURLToPath(new URL('../src/cli/qed.cjs', import.meta.url));

function parseSize(text: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(text);
  if (!m) throw new Error(`bad size ${text}`);
  return Number(m[1]) * ({ '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 } as Record<string, number>)[m[2]!.toUpperCase()]!;
}

function timeRun(program: string, argv: string[]): number {
  const started = performance.now();
  const r = spawnSync(program, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = performance.now() - started;
  if (r.status !== 0) throw new Error(`${program} ${argv.join(' ')} failed: ${r.stderr}`);
  return ms;
}

function verify(source: string, output: string): void {
  execFileSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'qed', source, output]);
  execFileSync('qemu-img', ['check', '-q', output]);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const source = join(dir, 'source.raw');
try {
  writeMixedRaw(source, size, 20261125);
  const contenders = {
    qemu: (out: string) => timeRun('qemu-img', ['convert', '-f', 'raw', '-O', 'qed', source, out]),
    ours: (out: string) => timeRun(process.execPath, [cli, 'convert', '-f', 'raw', '-O', 'qed', source, out]),
  };
  const samples: Record<keyof typeof contenders, number[]> = { qemu: [], ours: [] };
  const sizes: Record<string, number> = {};
  for (let round = 0; round < rounds; round++) {
    for (const who of ['qemu', 'ours', 'ours', 'qemu'] as const) {
      const out = join(dir, `${who}.qed`);
      rmSync(out, { force: true });
      samples[who].push(contenders[who](out));
      verify(source, out);
      sizes[who] = statSync(out).size;
      rmSync(out);
    }
  }
  const q = median(samples.qemu) / 1000;
  const o = median(samples.ours) / 1000;
  const mib = size / 2 ** 20;
  console.log(`convert raw -> qed, ${mib} MiB source with mixed data and zero runs, ${rounds} rounds of A B B A, medians:`);
  console.log(`| contender | seconds | MiB/s of source | output file size |`);
  console.log(`|---|---:|---:|---:|`);
  console.log(`| qemu-img convert -O qed | ${q.toFixed(2)} | ${(mib / q).toFixed(0)} | ${sizes.qemu} |`);
  console.log(`| qed convert -O qed | ${o.toFixed(2)} | ${(mib / o).toFixed(0)} | ${sizes.ours} |`);
  console.log(`ours/QEMU speed: ${(q / o).toFixed(2)}x (samples: qemu ${samples.qemu.map((x) => (x / 1000).toFixed(2)).join(' ')}; ours ${samples.ours.map((x) => (x / 1000).toFixed(2)).join(' ')})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
