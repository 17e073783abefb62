// A deliberately misbehaving campaign worker, to show that the fuzz harness (fuzz-run.ts)
// fails a run whose case hangs (even in a synchronous loop) or outgrows the heap limit.
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { WorkerMessage } from './fuzz-run.js';

export interface HarnessJob { misbehave: 'hang' | 'grow' }

function post(m: WorkerMessage): void { parentPort!.postMessage(m); }

if (!isMainThread && (workerData as Partial<HarnessJob> | null)?.misbehave) {
  const job = workerData as HarnessJob;
  post({ kind: 'case', description: `a case that ${job.misbehave === 'hang' ? 'never ends' : 'keeps allocating'}` });
  if (job.misbehave === 'hang') {
    for (;;) { /* a synchronous loop: no timer in this thread could end it */ }
  } else {
    const kept: number[][] = [];
    for (;;) kept.push(new Array(1 << 16).fill(kept.length));
  }
}
