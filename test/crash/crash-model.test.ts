// The crash explorer's own model, checked on hand-built histories: if these were wrong, the
// explorer could call a broken engine safe (too weak) or a correct one broken (too strict).
import test from 'node:test';
import assert from 'node:assert/strict';
import { MemoryFile, MemoryStore } from '../../src/io/memory-file.js';
import { createImage } from '../../src/ops/create.js';
import { openDevice } from '../../src/ops/open.js';
import { CrashDisk, CrashFile, EventClock, crashEpochs } from '../support/crash-file.js';
import { ContentModel, GuestLog, bytesOf, patternBytes, verifyContent } from '../support/crash-explorer.js';

const filled = (length: number, value: number) => new Uint8Array(length).fill(value);

/** A settle function the test releases by hand, to complete operations in a chosen order. */
function gate(): { settle: () => Promise<void>; release: (which?: number) => void } {
  const waiting: Array<() => void> = [];
  return {
    settle: () => new Promise<void>((resolve) => waiting.push(resolve)),
    /** Complete the `which`-th operation still in flight, in issue order (default: the oldest). */
    release: (which = 0) => waiting.splice(which, 1)[0]!(),
  };
}

test('a flush makes durable only the writes that completed before it was issued', async () => {
  const clock = new EventClock();
  const { settle, release } = gate();
  const file = new CrashFile(new MemoryFile('d'), clock, settle);
  const a = file.write(filled(512, 1), 0);
  release(); await a;                       // A completes
  const b = file.write(filled(512, 2), 512);    // B in flight ...
  const f = file.flush();                       // ... when the flush is issued
  release(); await b;                       // B completes after the flush was issued
  release(); await f;
  const epochs = crashEpochs(file.log);
  assert.equal(epochs.length, 2);
  assert.deepEqual(epochs[0]!.durable.map((op) => op.index), []);
  assert.deepEqual(epochs[1]!.durable.map((op) => op.index), [0], 'A is durable after the flush');
  assert.deepEqual(epochs[1]!.pending.map((op) => op.index), [1], 'B is not: it was in flight when the flush began');
});

test('a crash state applies durable operations, then the chosen pending ones in issue order, torn per sector', async () => {
  const clock = new EventClock();
  const file = new CrashFile(new MemoryFile('d'), clock);
  await file.write(filled(1536, 1), 0);
  await file.flush();
  await file.write(filled(1536, 2), 0);         // three sectors
  await file.truncate(4096);
  const [, epoch] = crashEpochs(file.log);
  const disks = new CrashDisk(file.durableBase);
  const torn = disks.materialise(epoch!, [{ op: epoch!.pending[0]!, keeps: (sector) => sector === 1 }]);
  assert.deepEqual([...bytesOf(torn)].filter((_, i) => i % 512 === 0), [1, 2, 1], 'only the middle sector landed');
  const grown = disks.materialise(epoch!, [{ op: epoch!.pending[1]! }]);
  assert.equal(grown.sizeSync, 4096);
  assert.equal(bytesOf(grown)[0], 1, 'the write before the truncate was lost');
});

test('an operation that completes after later ones still reaches the durable image', async () => {
  const clock = new EventClock();
  const { settle, release } = gate();
  const file = new CrashFile(new MemoryFile('d'), clock, settle);
  const slow = file.write(filled(512, 7), 0);
  const f1 = file.flush();
  release(1); await f1;                          // the first flush completes without the slow write
  release(); await slow;
  const f2 = file.flush();
  release(); await f2;
  const epochs = crashEpochs(file.log);
  const last = epochs[epochs.length - 1]!;
  assert.deepEqual(last.durable.map((op) => op.index), [0]);
  assert.equal(bytesOf(new CrashDisk(file.durableBase).materialise(last, []))[0], 7);
});

test('the content model keeps acknowledged-and-flushed writes exact and allows old or new elsewhere', () => {
  const log = new GuestLog();
  const w = (data: number, issued: number, acked: number) => ({ offset: 0, length: 512, data: filled(512, data), issued, acked });
  log.writes.push(w(1, 1, 2), w(2, 3, 4), w(3, 6, 8), w(4, 7, Infinity));
  log.syncs.push({ issued: 5, acked: 9 });
  const model = new ContentModel(filled(512, 0), 512, log);
  const valuesAt = (before: number) => model.expectationAt(before).candidates.get(0)!.map((v) => v[0]);
  assert.deepEqual(valuesAt(9), [0, 1, 2, 3, 4], 'before the flush is acknowledged anything issued may be there');
  assert.deepEqual(valuesAt(10), [2, 3, 4], 'after it, write 2 is durable: the initial content and write 1 are gone');
  assert.deepEqual(model.expectationAt(10, true).candidates.get(0)!.map((v) => v[0]), [3, 4], 'with no crash, the last acknowledged write or one in flight');
});

test('the content check finds a third value in a written sector and in one no write touched', async () => {
  const store = new MemoryStore();
  await createImage('/m.qed', { store, size: 64 * 1024, clusterSize: 4096, tableSize: 2 });
  const device = await openDevice('/m.qed', { store });
  const written = patternBytes(1024, 1);
  await device.write(written, 0x1000);
  const log = new GuestLog();
  log.writes.push({ offset: 0x1000, length: 1024, data: written, issued: 1, acked: 2 });
  log.syncs.push({ issued: 3, acked: 4 });
  const model = new ContentModel(new Uint8Array(64 * 1024), 64 * 1024, log);
  assert.deepEqual(await verifyContent(device, model, model.expectationAt(Infinity)), []);

  await device.write(patternBytes(512, 2), 0x1200);   // a written sector changed behind the model's back
  await device.write(patternBytes(512, 3), 0x9000);   // and one no write touched
  const problems = await verifyContent(device, model, model.expectationAt(Infinity));
  assert.equal(problems.length, 2, problems.join('; '));
  assert.match(problems[0]!, /sector at 0x1200 holds bytes no write produced/);
  assert.match(problems[1]!, /sector at 0x9000 holds bytes no write produced/);
  await device.close();
});

test('a close that resolved covers every write acknowledged before it, even one still in flight when close began', () => {
  const log = new GuestLog();
  const w = (data: number, issued: number, acked: number) => ({ offset: 0, length: 512, data: filled(512, data), issued, acked });
  // Write 1 acknowledged, close issued at 3 while write 2 (issued at 2) is in flight; write 2 acknowledged at 4, close at 5.
  log.writes.push(w(1, 0, 1), w(2, 2, 4));
  log.syncs.push({ issued: 3, acked: 5, drains: true });
  const model = new ContentModel(filled(512, 0), 512, log);
  const valuesAt = (before: number) => model.expectationAt(before).candidates.get(0)!.map((v) => v[0]);
  assert.deepEqual(valuesAt(5), [0, 1, 2], 'before close is acknowledged nothing is promised');
  assert.deepEqual(valuesAt(6), [2], 'after it, the write acknowledged during close is durable');
  log.syncs[0]!.drains = false;
  assert.deepEqual(valuesAt(6), [1, 2], 'a flush issued at 3 would cover only write 1');
});

test('a FUA write is durable from its acknowledgement on; a plain write beside it is not', () => {
  const log = new GuestLog();
  log.writes.push(
    { offset: 0, length: 512, data: filled(512, 1), issued: 1, acked: 2 },
    { offset: 0, length: 512, data: filled(512, 2), issued: 3, acked: 4, fua: true },
    { offset: 512, length: 512, data: filled(512, 3), issued: 5, acked: 6 },
  );
  const model = new ContentModel(filled(1024, 0), 1024, log);
  const valuesAt = (before: number, sector: number) => model.expectationAt(before).candidates.get(sector)!.map((v) => v[0]);
  assert.deepEqual(valuesAt(4, 0), [0, 1, 2], 'in flight, the FUA write promises nothing yet');
  assert.deepEqual(valuesAt(5, 0), [2], 'acknowledged, it replaced the initial content and write 1');
  assert.deepEqual(valuesAt(7, 1), [0, 3], 'a plain write acknowledged later is still old or new');
});
