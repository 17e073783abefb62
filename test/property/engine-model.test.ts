// The engine against a flat byte model: random concurrent requests on random geometries,
// sizes, backing chains and cache sizes must read back exactly what the model says, and
// every close must leave an image that checkImage calls clean with NEED_CHECK clear.
// What is generated and how it is judged: test/support/engine-scenario.ts.
// QED_PROPERTY_SCALE multiplies the case counts (e.g. 10 for a soak run).
import test from 'node:test';
import fc from 'fast-check';
import { pressureScenarioArb, runScenario, scenarioArb, type RunStats, type Scenario } from '../support/engine-scenario.js';

const SCALE = Number(process.env.QED_PROPERTY_SCALE ?? 1);

async function check(name: string, arb: fc.Arbitrary<Scenario>, numRuns: number): Promise<void> {
  const stats: RunStats = { ops: 0, reopens: 0, bytesChecked: 0, evictions: 0 };
  let cases = 0;
  await fc.assert(
    fc.asyncProperty(arb, async (scenario) => {
      cases++;
      await runScenario(scenario, stats);
    }),
    { numRuns, includeErrorInReport: true },
  );
  console.log(`${name}: ${cases} cases, ${stats.ops} requests, ${stats.reopens} reopens, ${stats.evictions} table-cache evictions, ${(stats.bytesChecked / 2 ** 20).toFixed(0)} MiB compared`);
}

test('every read matches the model and every closed image checks clean, under concurrency and reopen', async () => {
  await check('engine-model', scenarioArb, Math.round(1800 * SCALE));
});

test('the model holds with the smallest table cache, where dirty chunks must be written back to make room', async () => {
  await check('engine-model (cache pressure)', pressureScenarioArb, Math.round(400 * SCALE));
});
