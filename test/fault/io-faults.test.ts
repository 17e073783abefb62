// I/O errors at every I/O point: for each workload, the Nth read, write, flush or truncate of
// the image file fails with EIO or ENOSPC, once or for good, for every N the workload reaches.
// Properties (docs/reliability.md, engine invariant [I5]):
//   - the failing request rejects with a QedError that keeps the errno; nothing hangs or crashes;
//   - a failed writeback (flush, close, resize) poisons the image, and a poisoned image fails
//     every later request; a transient fault on the data path fails only its own request;
//   - reopening the file without faults repairs it: no corruption, every write acknowledged
//     by a completed flush reads back, every other sector is old or new.
import test from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../../src/io/memory-file.js';
import { QedError } from '../../src/base/errors.js';
import { openDevice } from '../../src/ops/open.js';
import { createImage } from '../../src/ops/create.js';
import { putEntryAt } from '../../src/base/bytes.js';
import { EventClock } from '../support/crash-file.js';
import { type FaultCode, FaultFile, type FaultPlan, storeWith } from '../support/fault-file.js';
import {
  ContentModel, GuestLog, GuestRecorder, IMAGE_PATH, NO_IDLE_FLUSH_MS, buildBacking, corruptionOf,
  messageOf, patternBytes, verifyContent, type Workload,
} from '../support/crash-explorer.js';

const KiB = 1024;
const STEP_TIMEOUT_MS = 5000;

interface Step {
  label: string;
  /** Steps that write metadata back; a failed write or flush in one must poison the image. */
  writesBack?: boolean;
  /** quiesce() is the idle timer's hook and promises nothing: on a poisoned image it does nothing. */
  maintenance?: boolean;
  run(g: GuestRecorder, check: () => Promise<string[]>): Promise<void>;
}

interface FaultScenario {
  name: string;
  image: Pick<Workload, 'clusterSize' | 'tableSize' | 'size' | 'backing' | 'cacheBytes'>;
  /** Bring the image to its starting state (durable writes go through `g`, so the model knows them). */
  prepare?(g: GuestRecorder, store: MemoryStore): Promise<void>;
  steps: Step[];
}

const data = (length: number, seed: number) => patternBytes(length, seed);
const write = (offset: number, length: number, seed: number): Step =>
  ({ label: `write ${offset.toString(16)}+${length.toString(16)}`, run: (g) => g.write(data(length, seed), offset) });
const zeroes = (offset: number, length: number): Step =>
  ({ label: `zeroes ${offset.toString(16)}+${length.toString(16)}`, run: (g) => g.writeZeroes(offset, length) });
const flush: Step = { label: 'flush', writesBack: true, run: (g) => g.flush() };
const close: Step = { label: 'close', writesBack: true, run: (g) => g.close() };
const quiesce: Step = { label: 'quiesce', writesBack: true, maintenance: true, run: (g) => g.quiesce() };
const resize = (size: number): Step => ({ label: `resize ${size}`, writesBack: true, run: (g) => g.resize(size) });
/** Read everything back while the image is open: every acknowledged write must be there. */
const verify: Step = {
  label: 'read back',
  async run(_g, check) {
    const problems = await check();
    if (problems.length > 0) throw new WrongData(problems.join('; '));
  },
};

class WrongData extends Error {}
class Hang extends Error {}

const scenarios: FaultScenario[] = [
  {
    name: 'writes, zero writes, growth without a backing file',
    image: { clusterSize: 4 * KiB, tableSize: 2, size: 256 * KiB },
    steps: [
      write(0x1000, 0x2000, 1), write(0x5200, 0x400, 2), verify, flush, write(0x1200, 0x200, 3),
      zeroes(0x8000, 0x2000), zeroes(0x1400, 0x400),
      {
        label: 'three writes in flight',
        run: (g) => Promise.all([g.write(data(0x1000, 4), 0x20000), g.write(data(0x600, 5), 0x21200), g.write(data(0x200, 6), 0x30000)]).then(() => undefined),
      },
      quiesce, verify, resize(320 * KiB), write(0x48000, 0x1000, 7), flush, write(0x6000, 0x1000, 8), verify, close,
    ],
  },
  {
    name: 'copy-on-write over a raw backing file',
    image: { clusterSize: 4 * KiB, tableSize: 2, size: 128 * KiB, backing: { format: 'raw', size: 128 * KiB } },
    steps: [
      write(0x1200, 0x400, 11), write(0x3e00, 0x1400, 12), verify, flush, zeroes(0x8000, 0x1000),
      zeroes(0x9200, 0x200), flush, write(0xa000, 0x200, 13), verify, close,
    ],
  },
  {
    // Four 4 KiB cache chunks, five dirty ones: tables are written back in the background,
    // mid-request; a fault there must still surface (as POISONED, with the errno as its cause).
    name: 'table writeback under cache pressure',
    image: { clusterSize: 4 * KiB, tableSize: 4, size: 8 * 1024 * KiB, cacheBytes: 16 * KiB },
    steps: [
      write(0x000000, 0x1000, 31), write(0x200000, 0x1000, 32), write(0x400000, 0x1000, 33), write(0x600000, 0x1000, 34),
      write(0x201000, 0x1000, 35), verify, write(0x601000, 0x400, 36), flush, write(0x002000, 0x1000, 37),
      write(0x402000, 0x1000, 38), write(0x602000, 0x1000, 39), verify, close,
    ],
  },
  {
    name: 'repair on open of a dirty image',
    image: { clusterSize: 4 * KiB, tableSize: 2, size: 128 * KiB },
    async prepare(g, store) {
      await g.write(data(0x3000, 21), 0x2000);
      await g.write(data(0x400, 22), 0x10200);
      await g.flush(); // NEED_CHECK stays set: the image is never closed
      // What a crash can leave: an entry past the end of the file and leaked clusters at the end.
      const file = store.files.get(IMAGE_PATH)!;
      const l2 = new Uint8Array(8);
      file.readSync(l2, 4 * KiB); // L1 entry 0
      const l2Offset = new DataView(l2.buffer).getUint32(0, true);
      const entry = new Uint8Array(8);
      putEntryAt(new DataView(entry.buffer), 0, file.sizeSync + 16 * 4 * KiB);
      file.writeSync(entry, l2Offset + 8 * 0x18); // guest cluster 0x18 was never written
      file.truncateSync(file.sizeSync + 2 * 4 * KiB);
    },
    steps: [verify, write(0x18000, 0x200, 23), write(0x2400, 0x400, 24), flush, verify, close],
  },
];

interface RunOutcome { failures: string[]; fired: boolean }

/** One run of `scenario` with `plan` (null: no fault, to count the I/O points). */
async function runWithFault(scenario: FaultScenario, plan: FaultPlan | null, countFor: FaultCode): Promise<RunOutcome & { points: number }> {
  const failures: string[] = [];
  const store = new MemoryStore();
  const initial = new Uint8Array(2 * scenario.image.size);
  const backingName = scenario.image.backing ? `base.${scenario.image.backing.format}` : undefined;
  if (scenario.image.backing) {
    const workload = { ...scenario.image, name: scenario.name, run: async () => undefined };
    await buildBacking(store, store.resolveBacking(IMAGE_PATH, backingName!), workload, 7, initial);
  }
  await createImage(IMAGE_PATH, {
    store, size: scenario.image.size, clusterSize: scenario.image.clusterSize, tableSize: scenario.image.tableSize,
    backingFile: backingName, backingFormat: scenario.image.backing?.format,
  });
  const clock = new EventClock();
  const log = new GuestLog();
  if (scenario.prepare) {
    const device = await openDevice(IMAGE_PATH, { store, idleFlushMs: NO_IDLE_FLUSH_MS });
    await scenario.prepare(new GuestRecorder(device, clock, log), store);
  }
  const underlying = store.files.get(IMAGE_PATH)!;
  const faulty = new FaultFile(underlying.view(false), plan, countFor);
  const model = () => new ContentModel(initial, scenario.image.size, log);
  const check = async (device: GuestRecorder['device']) => { const m = model(); return verifyContent(device, m, m.expectationAt(Infinity, true)); };

  let firstFailure: { step: Step | null; err: unknown } | null = null;
  const noteRejection = (step: Step | null, err: unknown): void => {
    const where = step ? `step '${step.label}'` : 'open';
    if (err instanceof Hang) failures.push(`${where} hung`);
    else if (err instanceof WrongData) failures.push(`${where}: wrong data while the image stayed usable: ${err.message}`);
    else if (!(err instanceof QedError)) failures.push(`${where} rejected with a non-QedError: ${messageOf(err)}`);
    if (!firstFailure) {
      firstFailure = { step, err };
      if (faulty.fired.length === 0) failures.push(`${where} failed with no fault injected: ${messageOf(err)}`);
      else if (errnoOf(err) !== plan?.code) failures.push(`${where} lost the errno: ${messageOf(err)}`);
    }
  };

  let device: GuestRecorder['device'] | null = null;
  try {
    device = await within(openDevice(IMAGE_PATH, {
      store: storeWith(store, IMAGE_PATH, faulty), idleFlushMs: NO_IDLE_FLUSH_MS, cacheBytes: scenario.image.cacheBytes,
    }), 'open');
  } catch (err) {
    noteRejection(null, err);
  }
  if (device) {
    const g = new GuestRecorder(device, clock, log);
    let poisoned = false;
    let mustBePoisoned = false;
    for (const step of scenario.steps) {
      try {
        await within(step.run(g, () => check(g.device)), step.label);
        if ((poisoned || mustBePoisoned) && !step.maintenance) failures.push(`step '${step.label}' succeeded on a poisoned image`);
      } catch (err) {
        const wasFirst = firstFailure === null;
        noteRejection(step, err);
        const isPoisoned = err instanceof QedError && err.code === 'POISONED';
        if ((poisoned || mustBePoisoned) && !isPoisoned) failures.push(`step '${step.label}' on a poisoned image failed otherwise: ${messageOf(err)}`);
        if (!wasFirst && !plan?.persistent && !isPoisoned && !(poisoned || mustBePoisoned)) {
          failures.push(`step '${step.label}' failed after a transient fault had passed: ${messageOf(err)}`);
        }
        poisoned ||= isPoisoned;
        const lastFault = faulty.fired[faulty.fired.length - 1];
        if (wasFirst && step.writesBack && lastFault && lastFault.op !== 'read') mustBePoisoned = true;
      }
    }
  }
  if (faulty.fired.length > 0 && !firstFailure) failures.push(`a ${plan!.code} on ${faulty.fired[0]!.op} was swallowed: no request failed`);

  failures.push(...await reopenAndJudge(store, model()));
  return { failures, fired: faulty.fired.length > 0, points: faulty.points };
}

/** Reopen the file as the faults left it, without faults: repair, consistency, durable content, new writes. */
async function reopenAndJudge(store: MemoryStore, model: ContentModel): Promise<string[]> {
  const problems: string[] = [];
  const file = store.files.get(IMAGE_PATH)!;
  let device;
  try {
    device = await openDevice(IMAGE_PATH, { store, idleFlushMs: NO_IDLE_FLUSH_MS });
  } catch (err) {
    return [`reopen failed: ${messageOf(err)}`];
  }
  try {
    problems.push(...await corruptionOf(file, 'after reopen'));
    problems.push(...await verifyContent(device, model, model.expectationAt(Infinity)));
    await device.write(patternBytes(6 * KiB, 99), 0x3200);
    await device.flush();
    await device.close();
    problems.push(...await corruptionOf(file, 'after new writes'));
  } catch (err) {
    problems.push(`after reopen: ${messageOf(err)}`);
  }
  return problems.map((p) => `reopened: ${p}`);
}

function errnoOf(err: unknown): string | undefined {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) {
    const errno = (e as { errno?: unknown }).errno;
    if (typeof errno === 'string') return errno;
  }
  return undefined;
}

async function within<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Hang(what)), STEP_TIMEOUT_MS); });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

for (const scenario of scenarios) {
  test(`every EIO and ENOSPC, transient or persistent, at every I/O point of ${scenario.name} fails cleanly and loses no flushed write`, async () => {
    const failures: string[] = [];
    let runs = 0;
    let fired = 0;
    let pointsTotal = 0;
    for (const code of ['EIO', 'ENOSPC'] as const) {
      const clean = await runWithFault(scenario, null, code);
      assert.deepEqual(clean.failures, [], 'the scenario must pass without faults');
      pointsTotal += clean.points;
      for (const persistent of [false, true]) {
        for (let at = 1; at <= clean.points; at++) {
          const outcome = await runWithFault(scenario, { at, code, persistent }, code);
          runs++;
          if (outcome.fired) fired++;
          for (const f of outcome.failures) failures.push(`${code} ${persistent ? 'persistent' : 'transient'} at I/O point ${at}: ${f}`);
        }
      }
    }
    console.log(`fault injection (${scenario.name}): ${runs} runs over ${pointsTotal} I/O points, ${fired} faults fired, ${failures.length} failures`);
    assert.equal(fired, runs, 'every planned fault must fire');
    assert.deepEqual(failures.slice(0, 10), []);
  });
}
