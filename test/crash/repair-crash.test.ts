// A crash during a repair itself.
//
// 1. The NEED_CHECK repair on open. check.ts promises its order keeps that recoverable
//    (NEED_CHECK stays set to the end; copies are flushed before they are linked; tables are
//    flushed before a truncate; it moves nothing, only cuts leaks off the end). For one dirty
//    crash state in six of the usual workloads, the repair runs on a recording file and every
//    crash state of it is judged exactly as the dirty state itself would be: it must open
//    (repairing again), be consistent, keep every flushed write and show only old or new
//    sectors.
// 2. Compaction (`qed check -r leaks|all`, reclaim.ts): copy, flush, switch, flush,
//    truncate, flush, round after round. On images with leaks low under thousands of
//    clusters, under a wall of L2 tables (a park and a return) and in random layouts, every
//    crash state of the reclaim must hold no corruption, show the guest exactly what it saw
//    before, and let a second reclaim finish the job.
import test from 'node:test';
import assert from 'node:assert/strict';
import type { MemoryFile } from '../../src/io/memory-file.js';
import { readHeader } from '../../src/engine/open.js';
import { checkImage } from '../../src/check/check.js';
import { exploreInWorker, reportLine } from '../support/crash-explorer.js';
import { CrashDisk, CrashFile, EventClock, crashEpochs } from '../support/crash-file.js';
import { crashStates, describeLanded } from '../support/crash-states.js';
import { Random } from '../support/crash-random.js';
import { guestClusters } from '../support/guest-clusters.js';
import { lowLeakImage, randomLeakyImage, tableWallImage, type LeakyImage } from '../support/leaky-images.js';

const TARGET = 20_000;

test('a crash at any point of a repair on open loses nothing the repair was protecting', async () => {
  const sources = ['./plain-writes.test.js', './backing-writes.test.js']
    .map((file) => ({ moduleUrl: new URL(file, import.meta.url).href, exportName: 'workloads' }));
  const result = await exploreInWorker(sources, 'interrupted repairs', TARGET, 'repair');
  console.log(reportLine('interrupted repairs', result));
  assert.deepEqual(result.violations.slice(0, 3), []);
  assert.ok(result.repairStates >= TARGET, `explored only ${result.repairStates} crash states of repairs`);
});

test('a crash at any point of a compaction (check -r leaks) leaves no corruption, the guest\'s clusters unchanged, and a reclaim that can finish', async () => {
  const images: Array<[string, LeakyImage]> = [
    ['a leak under 300 clusters', lowLeakImage(300)],
    ['a leak under a wall of L2 tables', tableWallImage()],
    ...Array.from({ length: 8 }, (_, i): [string, LeakyImage] => [`random layout ${i + 1}`, randomLeakyImage(1000 + i, 40)]),
  ];
  const rng = new Random(0x2ec1a1);
  let states = 0;
  const violations: string[] = [];
  for (const [name, { file }] of images) {
    const before = await guestClusters(file.view(true));
    const recording = new CrashFile(file, new EventClock());
    await checkImage(recording, (await readHeader(recording)).header, { fix: 'leaks' });
    const disks = new CrashDisk(file);
    for (const [index, epoch] of crashEpochs(recording.log).entries()) {
      for (const landed of crashStates(epoch.pending, rng, { randomSubsets: 50 })) {
        states++;
        const problems = await judgeCompactionCrash(disks.materialise(epoch, landed), before);
        if (problems.length > 0) violations.push(`${name}, epoch ${index + 1}: ${describeLanded(epoch.pending, landed)}: ${problems.join('; ')}`);
      }
    }
  }
  console.log(`crash explorer: ${states} crash states of interrupted compactions, ${violations.length} violations`);
  assert.deepEqual(violations.slice(0, 3), []);
  assert.ok(states >= 1000, `explored only ${states} crash states`);
});

async function judgeCompactionCrash(disk: MemoryFile, before: Map<number, string>): Promise<string[]> {
  const problems: string[] = [];
  const view = disk.view(true);
  const { header } = await readHeader(view);
  const found = await checkImage(view, header);
  if (found.corruptions > 0) problems.push(`${found.corruptions} corruption(s): ${found.problems.slice(0, 2).join('; ')}`);
  const guest = await guestClusters(view);
  const changed = [...before].filter(([cluster, digest]) => guest.get(cluster) !== digest).length + [...guest.keys()].filter((c) => !before.has(c)).length;
  if (changed > 0) problems.push(`${changed} guest cluster(s) changed`);
  if (problems.length > 0) return problems;
  const again = await checkImage(disk.view(false), header, { fix: 'leaks' });
  if (again.leaks > 0 || again.corruptions > 0) problems.push(`a second reclaim left ${again.leaks} leak(s), ${again.corruptions} corruption(s)`);
  return problems;
}
