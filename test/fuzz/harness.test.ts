// The fuzz harness can fail: a case that never ends (a synchronous loop, which no timer in its
// own thread could stop) or that keeps allocating fails the run and names the case.
import test from 'node:test';
import assert from 'node:assert/strict';
import { runCampaign } from '../support/fuzz-run.js';
import type { HarnessJob } from '../support/fuzz-harness-worker.js';

const WORKER = new URL('../support/fuzz-harness-worker.js', import.meta.url);

test('a case that hangs is stopped at the bound and reported with the case', async () => {
  const job: HarnessJob = { misbehave: 'hang' };
  const report = await runCampaign(WORKER, job, { caseMs: 1000, heapMb: 64 });
  assert.match(report.failure ?? '', /ran longer than 1000 ms \(hang\): a case that never ends/);
});

test('a case that keeps allocating dies at the heap limit and is reported with the case', async () => {
  const job: HarnessJob = { misbehave: 'grow' };
  const report = await runCampaign(WORKER, job, { caseMs: 60_000, heapMb: 64 });
  assert.match(report.failure ?? '', /during a case that keeps allocating/);
});
