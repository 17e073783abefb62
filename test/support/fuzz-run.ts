// Running a fuzz campaign off the test runner's thread, under a watchdog.
//
// A campaign runs on a worker thread with a heap limit: a case that loops forever (even
// synchronously) or allocates without bound cannot take the suite down with it. Before each
// case the worker posts the case; the main thread terminates the worker when one case runs
// longer than the hang bound and reports that case, and a worker that dies of its heap limit
// reports the case it was running. Both are failures, with the case to keep as a regression.
import { Worker } from 'node:worker_threads';
import { seedFrom, soakFrom } from './run-knobs.js';

/** QED_FUZZ_SEED repeats a run; otherwise each run draws new cases. */
export function fuzzSeed(): number { return seedFrom('QED_FUZZ_SEED'); }

/** QED_FUZZ_SOAK=N runs N × 500 times the cases of a CI run (QED_FUZZ_SOAK=1: about a million image cases). */
export function fuzzSoakFactor(): number { return soakFrom('QED_FUZZ_SOAK', 500); }

export interface CampaignReport {
  /** Lines for the test output. */
  log: string[];
  /** Null when every case passed. */
  failure: string | null;
  stats: Record<string, number>;
}

/** Messages a campaign worker posts. */
export type WorkerMessage =
  | { kind: 'case'; description: string }
  | { kind: 'log'; line: string }
  | { kind: 'done'; failure: string | null; stats: Record<string, number> };

export interface CampaignLimits {
  /** A case running longer than this is a hang (the bound is generous: the machine is shared). */
  caseMs: number;
  heapMb: number;
}

/** Run the worker module at `moduleUrl` with `job`, under the watchdog. */
export function runCampaign(moduleUrl: URL, job: unknown, limits: CampaignLimits): Promise<CampaignReport> {
  return new Promise((resolve) => {
    const worker = new Worker(moduleUrl, { workerData: job, resourceLimits: { maxOldGenerationSizeMb: limits.heapMb } });
    const log: string[] = [];
    let current = '(before the first case)';
    let startedAt = Date.now();
    let settled = false;
    const finish = (report: CampaignReport) => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      resolve(report);
    };
    const watchdog = setInterval(() => {
      if (Date.now() - startedAt > limits.caseMs) {
        void worker.terminate();
        finish({ log, failure: `a case ran longer than ${limits.caseMs} ms (hang): ${current}`, stats: {} });
      }
    }, 250);
    worker.on('message', (m: WorkerMessage) => {
      if (m.kind === 'case') { current = m.description; startedAt = Date.now(); }
      else if (m.kind === 'log') log.push(m.line);
      else finish({ log, failure: m.failure, stats: m.stats });
    });
    worker.on('error', (err) => finish({ log, failure: `the worker failed (${err.message}) during ${current}`, stats: {} }));
    worker.on('exit', (code) => finish({ log, failure: `the worker exited (code ${code}) during ${current}`, stats: {} }));
  });
}
