// Process kills: a worker writes to a real file on /dev/shm through the library and is
// SIGKILLed at random moments, dozens of times, on the same image (test/support/kill-worker.ts
// says what it does and prints). After each kill:
//   - `qemu-img check` finds no corruption in the image as the kill left it (leaks allowed;
//     NEED_CHECK may be set, in which case QEMU itself would repair on a read-write open);
//   - our library opens it (repairing it), every write acknowledged before a completed flush
//     reads back, every other sector holds its old or its new content;
//   - `qemu-img check` finds no corruption after our repair either.
// Every other round the parent judges a copy and leaves the dirty original to the next
// worker, so the worker's own repair-on-open is exercised (and sometimes killed mid-way).
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDevice } from '../../src/ops/open.js';
import { createImage } from '../../src/ops/create.js';
import { QED_F_NEED_CHECK } from '../../src/format/constants.js';
import { ContentModel, GuestLog, Random, crashSeed, patternBytes, qemuCheck, verifyContent, type QemuVerdict } from '../support/crash-explorer.js';
import { KILL_CLUSTER_SIZE, KILL_IMAGE_SIZE, dataSeed } from '../support/kill-worker.js';

const WORKER = fileURLToPath(new URL('../support/kill-worker.js', import.meta.url));
const WANTED_KILLS = 60;
const MIN_KILLS = 20;
const TIME_BUDGET_MS = 45_000;

interface Victim { lines: string[]; code: number | null; signal: NodeJS.Signals | null; stderr: string }

/** Run the worker and SIGKILL it `delayMs` after it opened the image (or after spawning it, if `early`). */
function runAndKill(image: string, seed: number, delayMs: number, early: boolean): Promise<Victim> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [WORKER, image, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let armed = false;
    const arm = () => { armed = true; setTimeout(() => child.kill('SIGKILL'), delayMs); };
    if (early) arm();
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
      if (!armed && stdout.startsWith('ready ')) arm();
    });
    child.stderr.on('data', (chunk: string) => { stderr += chunk; });
    child.on('close', (code, signal) => {
      // A line cut short cannot happen (each is one write(2) below PIPE_BUF), but never trust a tail.
      const lines = stdout.split('\n');
      lines.pop();
      resolve({ lines, code, signal, stderr });
    });
  });
}

/** Turn the worker's report into the guest log the content model judges by; line number = time. */
function guestLogOf(victim: Victim, seed: number): { log: GuestLog; problems: string[] } {
  const log = new GuestLog();
  const problems: string[] = [];
  const writes = new Map<number, GuestLog['writes'][number]>();
  const flushes = new Map<number, GuestLog['syncs'][number]>();
  let acked = 0;
  const ackedAtFlush = new Map<number, number>();
  victim.lines.forEach((line, i) => {
    const tick = i + 1;
    const [kind, a, b, c, d] = line.split(' ');
    if (kind === 'w') {
      const id = Number(a);
      const w = { offset: Number(b), length: Number(c), data: d === 'd' ? patternBytes(Number(c), dataSeed(seed, id)) : null, issued: tick, acked: Infinity };
      writes.set(id, w);
      log.writes.push(w);
    } else if (kind === 'a') {
      writes.get(Number(a))!.acked = tick;
      acked++;
    } else if (kind === 'f') {
      const s = { issued: tick, acked: Infinity };
      flushes.set(Number(a), s);
      ackedAtFlush.set(Number(a), acked);
      log.syncs.push(s);
    } else if (kind === 'F') {
      flushes.get(Number(a))!.acked = tick;
      if (Number(c) !== ackedAtFlush.get(Number(a))) problems.push(`worker says flush ${a} covers ${c} writes, its log says ${ackedAtFlush.get(Number(a))}`);
    } else if (kind !== 'ready') {
      problems.push(`unexpected worker line '${line}'`);
    }
  });
  return { log, problems };
}

function needsCheck(path: string): boolean {
  const header = readFileSync(path).subarray(0, 64);
  return (new DataView(header.buffer, header.byteOffset).getBigUint64(16, true) & QED_F_NEED_CHECK) !== 0n;
}

function corruptionIn(v: QemuVerdict): boolean {
  return !(v.exit === 0 || v.exit === 3) || v.corruptions > 0 || v.checkErrors > 0;
}

test('SIGKILL at random moments never corrupts the image or loses a flushed write', async () => {
  const seed = crashSeed();
  const rng = new Random(seed);
  console.log(`kill test: seed ${seed} (QED_CRASH_SEED=${seed} repeats the schedule)`);
  const dir = mkdtempSync('/dev/shm/qed-kill-');
  const image = join(dir, 'disk.qed');
  const copy = join(dir, 'copy.qed');
  const problems: string[] = [];
  const stats = { kills: 0, early: 0, writes: 0, flushes: 0, dirty: 0 };
  try {
    // A raw backing file under half the image: copy-on-write and its flush-before-link [I2] run too.
    let content = new Uint8Array(KILL_IMAGE_SIZE);
    content.set(patternBytes(KILL_IMAGE_SIZE / 2, seed ^ 0xbac1), 0);
    writeFileSync(join(dir, 'base.raw'), content.subarray(0, KILL_IMAGE_SIZE / 2));
    await createImage(image, { size: KILL_IMAGE_SIZE, clusterSize: KILL_CLUSTER_SIZE, tableSize: 2, backingFile: 'base.raw', backingFormat: 'raw' });

    const started = Date.now();
    for (let round = 0; round < WANTED_KILLS && Date.now() - started < TIME_BUDGET_MS; round++) {
      const early = rng.chance(0.15);
      const victimSeed = (seed + round * 7919) >>> 0;
      const victim = await runAndKill(image, victimSeed, early ? 20 + rng.int(100) : 5 + rng.int(250), early);
      const where = `round ${round} (worker seed ${victimSeed})`;
      if (victim.signal !== 'SIGKILL') {
        problems.push(`${where}: worker ended by itself (code ${victim.code}): ${victim.stderr.slice(0, 500)}`);
        break;
      }
      stats.kills++;
      if (victim.lines.length === 0 || !victim.lines[0]!.startsWith('ready')) stats.early++;
      const { log, problems: logProblems } = guestLogOf(victim, victimSeed);
      problems.push(...logProblems.map((p) => `${where}: ${p}`));
      stats.writes += log.writes.filter((w) => w.acked !== Infinity).length;
      stats.flushes += log.syncs.filter((s) => s.acked !== Infinity).length;

      const asKilled = qemuCheck(image);
      if (corruptionIn(asKilled)) problems.push(`${where}: qemu-img check of the killed image: ${asKilled.output}`);
      if (needsCheck(image)) stats.dirty++;

      // Odd rounds: judge a copy, so that the next worker has to repair the original itself.
      const judged = round % 2 === 1 ? (copyFileSync(image, copy), copy) : image;
      // Earlier rounds left data in the image: every sector is read back, mapped or not.
      const model = new ContentModel(content, KILL_IMAGE_SIZE, log, false);
      const device = await openDevice(judged);
      try {
        problems.push(...(await verifyContent(device, model, model.expectationAt(Infinity))).map((p) => `${where}: ${p}`));
        content = new Uint8Array(KILL_IMAGE_SIZE);
        await device.read(content, 0);
      } finally {
        await device.close();
      }
      const repaired = qemuCheck(judged);
      if (corruptionIn(repaired)) problems.push(`${where}: qemu-img check after our repair: ${repaired.output}`);
      if (problems.length > 0) break;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`kill test: ${stats.kills} SIGKILLs (${stats.early} before the worker was ready, ${stats.dirty} leaving NEED_CHECK set), ${stats.writes} writes and ${stats.flushes} flushes acknowledged, ${problems.length} problems`);
  assert.deepEqual(problems, []);
  assert.ok(stats.kills >= MIN_KILLS, `only ${stats.kills} kills fit in the time budget`);
});
