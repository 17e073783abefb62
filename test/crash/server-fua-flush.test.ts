// Crash safety of writes through the NBD server: several connections at once write, write
// with FUA, zero and flush (test/support/server-workloads.ts), and every crash state of every
// flush epoch is judged by the explorer: the image opens and checks clean, a FUA request is
// durable from its reply on, a FLUSH answered on one connection keeps every write answered on
// any connection before it was sent (multi-conn), and every other sector is old or new.
import test from 'node:test';
import assert from 'node:assert/strict';
import { exploreInWorker, reportLine, type RunTuning } from '../support/crash-explorer.js';

const WORKLOADS = new URL('../support/server-workloads.js', import.meta.url).href;
const TUNING: RunTuning = { states: { randomSubsets: 150 }, qemuSamples: 20 };
const TARGET = 8_000;

test('FUA and FLUSH across several NBD connections: every crash state keeps what the server acknowledged as durable', async () => {
  const result = await exploreInWorker([{ moduleUrl: WORKLOADS, exportName: 'serverWorkloads' }], 'NBD server, FUA and FLUSH on several connections', TARGET, 'workload', TUNING);
  console.log(reportLine('NBD server, FUA and FLUSH on several connections', result));
  assert.deepEqual(result.violations.slice(0, 3), []);
  assert.ok(result.states - result.repairStates >= TARGET, `explored only ${result.states - result.repairStates} workload crash states`);
});
