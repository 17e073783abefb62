// A crash during the NEED_CHECK repair itself. check.ts promises its order keeps that
// recoverable (NEED_CHECK stays set to the end; copies are flushed before they are linked;
// tables are flushed before a truncate; leaks inside the file are reclaimed by moving
// clusters: copy, flush, switch, flush, truncate). For one dirty crash state in six of the
// usual workloads, the repair runs on a recording file and every crash state of it is judged
// exactly as the dirty state itself would be: it must open (repairing again), be consistent,
// keep every flushed write and show only old or new sectors.
import test from 'node:test';
import assert from 'node:assert/strict';
import { exploreInWorker, reportLine } from '../support/crash-explorer.js';

const TARGET = 20_000;

test('a crash at any point of a repair loses nothing the repair was protecting', async () => {
  const sources = ['./plain-writes.test.js', './backing-writes.test.js']
    .map((file) => ({ moduleUrl: new URL(file, import.meta.url).href, exportName: 'workloads' }));
  const result = await exploreInWorker(sources, 'interrupted repairs', TARGET, 'repair');
  console.log(reportLine('interrupted repairs', result));
  assert.deepEqual(result.violations.slice(0, 3), []);
  assert.ok(result.repairStates >= TARGET, `explored only ${result.repairStates} crash states of repairs`);
});
