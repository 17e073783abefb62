// The image fuzz campaign, on a worker thread (see fuzz-run.ts): the kept regression cases
// first, then fast-check's generated cases from a seed; every case is posted before it runs so
// that the watchdog can name a hang. A deterministic sample of repaired images (every Nth
// case whose repair succeeded) also goes to `qemu-img check`.
import { mkdtempSync, rmSync } from 'node:fs';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import fc from 'fast-check';
import { fuzzBases, fuzzNeighbours } from './fuzz-base-images.js';
import { judgeCase, qemuAgreesClean } from './fuzz-judge.js';
import { fuzzCaseArb, type FuzzCase } from './fuzz-mutations.js';
import type { WorkerMessage } from './fuzz-run.js';

export interface ImageFuzzJob {
  seed: number;
  cases: number;
  regressions: FuzzCase[];
  /** Show every Nth repaired image to qemu-img. */
  qemuEvery: number;
}

const MiB = 1024 * 1024;
/** Heap and buffers after a case, at most: the images are a few hundred KiB; a claimed size must never be allocated. */
const MEMORY_BOUND = 1024 * MiB;

function post(m: WorkerMessage): void { parentPort!.postMessage(m); }

async function run(job: ImageFuzzJob): Promise<void> {
  const bases = fuzzBases();
  const neighbours = await fuzzNeighbours();
  const dir = mkdtempSync('/dev/shm/qed-fuzz-');
  const stats = { regressions: 0, cases: 0, refusedOps: 0, completedOps: 0, repairedImages: 0, qemuChecked: 0, qemuCouldNotOpen: 0, peakMemoryMiB: 0 };
  let sampled = 0;
  const judge = async (c: FuzzCase): Promise<string[]> => {
    post({ kind: 'case', description: JSON.stringify(c) });
    const outcome = await judgeCase(c, bases, neighbours);
    stats.refusedOps += outcome.refused;
    stats.completedOps += outcome.completed;
    const problems = [...outcome.problems];
    const { heapUsed, arrayBuffers } = process.memoryUsage();
    stats.peakMemoryMiB = Math.max(stats.peakMemoryMiB, Math.round((heapUsed + arrayBuffers) / MiB));
    if (heapUsed + arrayBuffers > MEMORY_BOUND) problems.push(`${Math.round((heapUsed + arrayBuffers) / MiB)} MiB of heap and buffers in use after this case`);
    const base = bases[c.base % bases.length]!;
    if (outcome.repaired) {
      stats.repairedImages++;
      if (base.qemuCanOpen && sampled++ % job.qemuEvery === 0) {
        const q = qemuAgreesClean(dir, outcome.repaired);
        if (!q.checked && process.env['QED_FUZZ_VERBOSE']) post({ kind: 'log', line: `qemu-img could not open: ${q.refusal}` });
        if (q.checked) stats.qemuChecked++; else stats.qemuCouldNotOpen++;
        if (q.problem) problems.push(q.problem);
      }
    }
    return problems;
  };
  let failure: string | null = null;
  try {
    for (const c of job.regressions) {
      const problems = await judge(c);
      stats.regressions++;
      if (problems.length > 0) { failure = `regression case ${JSON.stringify(c)}:\n  ${problems.join('\n  ')}`; break; }
    }
    if (failure === null) {
      const details = await fc.check(fc.asyncProperty(fuzzCaseArb(bases.length), async (c) => {
        stats.cases++;
        const problems = await judge(c);
        if (problems.length > 0) throw new Error(problems.join('\n  '));
      }), { seed: job.seed, numRuns: job.cases, endOnFailure: false });
      if (details.failed) {
        failure = `seed ${job.seed}, path ${details.counterexamplePath}: ${JSON.stringify(details.counterexample?.[0])}\n  ${details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)}`;
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  post({ kind: 'done', failure, stats });
}

if (!isMainThread && (workerData as Partial<ImageFuzzJob> | null)?.regressions) {
  run(workerData as ImageFuzzJob).catch((err: unknown) => {
    post({ kind: 'done', failure: `campaign crashed: ${err instanceof Error ? err.stack : String(err)}`, stats: {} });
  });
}
