// Crash safety of the operations that rewrite images as a whole: commit (into QED and raw
// bases, and -d), rebase (safe, onto QED, raw and nothing; and -u), amend, and convert -n
// into an existing image. Each runs on recording files and every crash state of every file
// it writes is judged (test/support/operation-crash.ts): the images open and check clean, and
// the guest sees what the operation's design allows (test/support/operation-scenarios.ts).
import test from 'node:test';
import assert from 'node:assert/strict';
import { crashSeed, soakFactor } from '../support/crash-explorer.js';
import { exploreOperation, type OperationScenario } from '../support/operation-crash.js';
import { openDevice } from '../../src/ops/open.js';
import { withQedFile } from '../../src/ops/chain-files.js';
import { makeEmpty } from '../../src/engine/make-empty.js';
import { operationScenarios } from '../support/operation-scenarios.js';

/** Crash states per operation at least, per run (times QED_CRASH_SOAK's factor). */
const TARGET_PER_OPERATION = 600;
const TOP = '/op/top.qed';

for (const { operation, scenarios } of operationScenarios) {
  test(`${operation}: every crash state opens, checks clean and shows the guest an allowed content`, async () => {
    const seed = crashSeed();
    const target = TARGET_PER_OPERATION * soakFactor();
    let states = 0;
    const violations: string[] = [];
    const started = performance.now();
    for (let round = 0; states < target && violations.length === 0; round++) {
      for (const [i, scenario] of scenarios.entries()) {
        const result = await exploreOperation(scenario, seed + round * 7919 + i * 104729);
        states += result.states;
        violations.push(...result.violations);
        if (violations.length > 0) break;
      }
    }
    console.log(`crash explorer: ${operation}: ${states} crash states, ${violations.length} violations (seed ${seed}; QED_CRASH_SEED=${seed} repeats it; ${((performance.now() - started) / 1000).toFixed(1)} s)`);
    assert.deepEqual(violations.slice(0, 3), []);
    assert.ok(states >= target, `explored only ${states} crash states`);
  });
}

test('the operation explorer can fail: a commit that empties the overlay before the base holds its data is caught', async () => {
  const good = operationScenarios[0]!.scenarios[0]!;
  const broken: OperationScenario = {
    ...good, name: 'commit, overlay emptied first',
    async run(store) {
      const overlay = await openDevice(TOP, { store, readOnly: true, noBacking: true });
      const extents = (await overlay.layerStatus(0, overlay.size)).filter((e) => e.kind === 'data');
      const pieces = await Promise.all(extents.map(async (e) => {
        const data = new Uint8Array(e.length);
        await overlay.read(data, e.guestOffset);
        return { offset: e.guestOffset, data };
      }));
      await overlay.close();
      await withQedFile(TOP, store, ({ file, header }) => makeEmpty(file, header));
      const base = await openDevice('/op/base.qed', { store, idleFlushMs: 1e9 });
      for (const p of pieces) await base.write(p.data, p.offset);
      await base.close();
    },
  };
  const result = await exploreOperation(broken, crashSeed());
  assert.ok(result.violations.some((v) => v.includes('no longer shows')), `not caught in ${result.states} states`);
});
