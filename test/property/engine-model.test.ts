// The engine against a flat byte model: random concurrent requests (with FUA, NO_HOLE and
// FAST_ZERO options) on random geometries, sizes, backing chains and cache sizes must read
// back exactly what the model says, overlapping writes and zeroes must leave each byte as one
// of them left it, close() with requests in flight must keep all of them, and every close
// must leave an image that checkImage calls clean with NEED_CHECK clear.
// What is generated and how it is judged: test/support/engine-scenario.ts.
// QED_PROPERTY_SCALE multiplies the case counts (e.g. 10 for a soak run).
import test from 'node:test';
import fc from 'fast-check';
import { emptyStats, pressureScenarioArb, runScenario, scenarioArb, type Scenario } from '../support/engine-scenario.js';

const SCALE = Number(process.env.QED_PROPERTY_SCALE ?? 1);

async function check(name: string, arb: fc.Arbitrary<Scenario>, numRuns: number): Promise<void> {
  const stats = emptyStats();
  let cases = 0;
  await fc.assert(
    fc.asyncProperty(arb, async (scenario) => {
      cases++;
      await runScenario(scenario, stats);
    }),
    { numRuns, includeErrorInReport: true },
  );
  console.log(`${name}: ${cases} cases, ${stats.ops} requests, ${stats.reopens} reopens (${stats.closesInFlight} closing with requests in flight), `
    + `${stats.overlaps} overlapping batches, ${stats.fastZeroRefused} fast zeroes refused, ${stats.evictions} table-cache evictions, ${(stats.bytesChecked / 2 ** 20).toFixed(0)} MiB compared`);
}

test('every read matches the model and every closed image checks clean, under concurrency, overlapping writes and zeroes, reopen and close with requests in flight', async () => {
  await check('engine-model', scenarioArb, Math.round(1800 * SCALE));
});

test('the model holds with the smallest table cache, where dirty chunks must be written back to make room', async () => {
  await check('engine-model (cache pressure)', pressureScenarioArb, Math.round(400 * SCALE));
});
