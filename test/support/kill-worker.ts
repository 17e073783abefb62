// The victim of the process-kill test (test/crash/kill.test.ts):
//
//   node dist/test/support/kill-worker.js IMAGE SEED
//
// Opens IMAGE read-write through the library (creating it if missing; a dirty image is
// repaired on open), then writes at random with a few requests in flight and flushes now and
// then, until it is killed. It tells the parent everything on stdout, one line per event,
// written synchronously (stdout to a pipe is synchronous on Linux), so a line the parent has
// read describes something that really happened before the kill:
//   ready <size>                     opened (repair done)
//   w <id> <offset> <length> <d|z>   about to issue write <id> (data from dataSeed(SEED, id), or zeros)
//   a <id>                           write <id> acknowledged
//   f <flush>                        about to issue a flush
//   F <flush> durable <n>            flush done: the n writes acknowledged before `f <flush>` are durable
import { existsSync, writeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { openDevice } from '../../src/ops/open.js';
import { createImage } from '../../src/ops/create.js';
import { Random, patternBytes } from './crash-explorer.js';
import '../../src/io/node-default.js'; // local files as the default store, as the package's Node entry sets up

export const KILL_IMAGE_SIZE = 8 * 1024 * 1024;
export const KILL_CLUSTER_SIZE = 4096;
/** Give up by itself if nobody kills it, so a broken parent cannot leave it running. */
const SELF_DESTRUCT_MS = 15_000;

export function dataSeed(seed: number, id: number): number {
  return (Math.imul(seed, 100003) + id * 7919) >>> 0;
}

function say(line: string): void {
  writeSync(1, line + '\n');
}

async function main(image: string, seed: number): Promise<void> {
  const rng = new Random(seed);
  setTimeout(() => process.exit(3), SELF_DESTRUCT_MS).unref();
  if (!existsSync(image)) await createImage(image, { size: KILL_IMAGE_SIZE, clusterSize: KILL_CLUSTER_SIZE, tableSize: 2 });
  // A short idle time so that NEED_CHECK is also cleared (and a kill can land around that).
  const device = await openDevice(image, { idleFlushMs: 10 + rng.int(40) });
  say(`ready ${device.size}`);
  const inFlight = new Set<Promise<void>>();
  let nextId = 0;
  let nextFlush = 0;
  let acknowledged = 0;
  const startWrite = (): void => {
    const id = nextId++;
    const sectors = 1 + rng.int(rng.chance(0.2) ? 64 : 12);
    const offset = rng.int(device.size / 512 - sectors) * 512;
    const zero = rng.chance(0.1);
    say(`w ${id} ${offset} ${sectors * 512} ${zero ? 'z' : 'd'}`);
    const done = (zero ? device.writeZeroes(offset, sectors * 512) : device.write(patternBytes(sectors * 512, dataSeed(seed, id)), offset))
      .then(() => { acknowledged++; say(`a ${id}`); });
    inFlight.add(done);
    void done.finally(() => inFlight.delete(done));
  };
  for (;;) {
    const depth = 1 + rng.int(4);
    while (inFlight.size < depth) startWrite();
    await Promise.race(inFlight);
    if (rng.chance(0.15)) {
      const flush = nextFlush++;
      const covered = acknowledged;
      say(`f ${flush}`);
      await device.flush();
      say(`F ${flush} durable ${covered}`);
    }
    if (rng.chance(0.03)) {
      await Promise.all(inFlight);
      await new Promise((resolve) => setTimeout(resolve, rng.int(60)));
    }
  }
}

// Run only as a program: the kill test imports dataSeed and the geometry from here.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [image, seedText] = process.argv.slice(2);
  if (!image || !seedText) {
    process.stderr.write('usage: kill-worker IMAGE SEED\n');
    process.exit(2);
  }
  main(image, Number(seedText)).catch((err: unknown) => {
    process.stderr.write(`kill-worker failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
