// Running the explorer: seeds, soak factor and state targets, rounds of workloads until the
// target is met, the report line, and the worker thread exploreInWorker runs it on.
import { mkdtempSync, rmSync } from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { QedImage } from '../../src/engine/qed-image.js';
import type { RepairHook } from '../../src/engine/open.js';
import { recordWorkload, type Workload } from './crash-workload.js';
import { addResult, emptyResult, exploreRecording, type ExploreOptions, type ExploreResult } from './explore-recording.js';
import type { CrashStateOptions } from './crash-states.js';
import { seedFrom, soakFrom } from './run-knobs.js';

/** QED_CRASH_SEED repeats a run; otherwise each run explores new states. */
export function crashSeed(): number { return seedFrom('QED_CRASH_SEED'); }

/** QED_CRASH_SOAK=N multiplies the exploration twenty-fold per N (millions of states). */
export function soakFactor(): number { return soakFrom('QED_CRASH_SOAK', 20); }

const QEMU_SAMPLES_PER_RUN = 100;

export interface RunOptions {
  /** Explore this (deliberately broken) engine instead of QedImage. */
  imageClass?: typeof QedImage;
  /** Crash this (deliberately broken) repair instead of the real one. */
  repair?: RepairHook;
  log?: (line: string) => void;
  /**
   * 'workload' (default): judge the workloads' crash states, and crash the repair of one
   * dirty state in 100 as well. 'repair': judge only crashes inside the repairs, of one
   * dirty state in 6; the target then counts those.
   */
  focus?: 'workload' | 'repair';
  /** How many crash states of each epoch to try (crash-states.ts; its defaults otherwise). */
  states?: CrashStateOptions;
  /** About how many states go to `qemu-img check` too (default 100; each costs a process). */
  qemuSamples?: number;
}

/** The knobs a test may pass to a run on the worker thread. */
export type RunTuning = Pick<RunOptions, 'states' | 'qemuSamples'>;

/**
 * Explore the workloads round after round, each round with new seeds, until `targetStates`
 * crash states were judged (times the soak factor). About 100 of them also go to QEMU.
 */
export async function exploreUntil(label: string, workloads: Workload[], targetStates: number, run: RunOptions = {}): Promise<ExploreResult> {
  const log = run.log ?? console.log;
  const repairsOnly = run.focus === 'repair';
  const seed = crashSeed();
  const target = targetStates * soakFactor();
  log(`crash explorer (${label}): seed ${seed}, target ${target} states (QED_CRASH_SEED=${seed} repeats this run)`);
  const dir = mkdtempSync('/dev/shm/qed-crash-');
  const every = Math.max(1, Math.floor(targetStates / (run.qemuSamples ?? QEMU_SAMPLES_PER_RUN)));
  const repairEvery = repairsOnly ? 6 : 100;
  let qemuCounter = 0;
  let dirtyCounter = 0;
  const options: ExploreOptions = {
    ...run.states,
    stopAfter: 20,
    qemuSample: () => (qemuCounter++ % every === 0 ? dir : null),
    repairCrashSample: () => dirtyCounter++ % repairEvery === 0,
    judgeWorkloadStates: !repairsOnly,
    repair: run.repair,
  };
  const counted = (r: ExploreResult) => (repairsOnly ? r.repairStates : r.states - r.repairStates);
  const total = emptyResult();
  const perWorkload = workloads.map(() => ({ states: 0, ms: 0 }));
  try {
    for (let round = 0; counted(total) < target && total.violations.length === 0; round++) {
      for (const [i, workload] of workloads.entries()) {
        const started = performance.now();
        const rec = await recordWorkload(workload, seed + round * 7919 + i * 104729, run.imageClass);
        const part = await exploreRecording(rec, options);
        addResult(total, part);
        perWorkload[i]!.states += part.states;
        perWorkload[i]!.ms += performance.now() - started;
        // Every workload runs at least once; after that, stop as soon as the target is met.
        if (total.violations.length > 0 || (round > 0 && counted(total) >= target)) break;
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (process.env['QED_CRASH_VERBOSE']) {
    for (const [i, w] of workloads.entries()) {
      const { states, ms } = perWorkload[i]!;
      log(`  ${w.name}: ${states} states, ${(ms / 1000).toFixed(1)} s, ${states ? Math.round(ms * 1000 / states) : 0} us/state`);
    }
  }
  for (const v of total.violations.slice(0, 5)) log(`VIOLATION ${v.where}\n  ${v.problems.join('\n  ')}`);
  return total;
}

/** Where a worker thread finds workloads: the export `exportName` of the module at `moduleUrl`. */
export interface WorkloadSource { moduleUrl: string; exportName: string }

/**
 * exploreUntil on a worker thread. node:test tracks every promise of a test file with an
 * async hook, which costs the explorer (millions of promises) about 40% of its time; a worker
 * thread has no such hook. The modules must not start tests when imported off the main thread.
 */
export function exploreInWorker(sources: WorkloadSource[], label: string, targetStates: number, focus: RunOptions['focus'] = 'workload',
  tuning: RunTuning = {}): Promise<ExploreResult> {
  return new Promise((resolve, reject) => {
    const job: ExploreJob = { sources, label, targetStates, focus, tuning };
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    let result: ExploreResult | null = null;
    worker.on('message', (message: { log?: string; result?: ExploreResult }) => {
      if (message.log !== undefined) console.log(message.log);
      if (message.result) result = message.result;
    });
    worker.on('error', reject);
    worker.on('exit', (code) => (result ? resolve(result) : reject(new Error(`explorer worker exited with code ${code} and no result`))));
  });
}

interface ExploreJob { sources: WorkloadSource[]; label: string; targetStates: number; focus: RunOptions['focus']; tuning: RunTuning }

async function runExploreJob(job: ExploreJob): Promise<void> {
  const workloads: Workload[] = [];
  for (const { moduleUrl, exportName } of job.sources) {
    workloads.push(...((await import(moduleUrl)) as Record<string, Workload[]>)[exportName]!);
  }
  const result = await exploreUntil(job.label, workloads, job.targetStates, { ...job.tuning, focus: job.focus, log: (line) => parentPort!.postMessage({ log: line }) });
  parentPort!.postMessage({ result });
}


export function reportLine(label: string, r: ExploreResult): string {
  return `crash explorer: ${r.states} states, ${r.violations.length} violations (${label}: ${r.states - r.repairStates} crash states of ${r.epochs} flush epochs`
    + ` and ${r.repairStates} of repairs interrupted in turn; ${r.qemuChecks} also checked by qemu-img)`;
}

// The worker-thread entry of exploreInWorker.
if (!isMainThread && (workerData as Partial<ExploreJob> | null)?.sources) {
  runExploreJob(workerData as ExploreJob).catch((err: unknown) => { throw err; });
}
