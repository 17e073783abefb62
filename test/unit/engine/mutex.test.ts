// Mutex, RangeLocks and Gate: exclusion, ordering, no deadlock, errors release.
import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Gate } from '../../../src/engine/gate.js';
import { Mutex } from '../../../src/engine/mutex.js';
import { RangeLocks } from '../../../src/engine/range-locks.js';

/** Let `n` turns of the event loop pass, so that other tasks can run in between. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

test('Mutex: bodies never overlap and start in arrival order; the value is returned', async () => {
  const mutex = new Mutex();
  let active = 0;
  const started: number[] = [];
  const results = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => mutex.run(async () => {
    started.push(i);
    active++;
    assert.equal(active, 1, 'one body at a time');
    await turns(3 - (i % 3));
    active--;
    return i * 10;
  })));
  assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(results, [0, 10, 20, 30, 40, 50]);
});

test('Mutex: a body that throws passes its error on and releases the mutex', async () => {
  const mutex = new Mutex();
  const failing = mutex.run(async () => { await turns(1); throw new Error('boom'); });
  const next = mutex.run(async () => 'ran');
  await assert.rejects(failing, /boom/);
  assert.equal(await next, 'ran');
});

test('RangeLocks: overlapping ranges exclude each other, disjoint ones run at once, all released', async () => {
  const locks = new RangeLocks();
  const a = await locks.lock(0, 9);
  const b = await locks.lock(10, 19); // disjoint: not held up
  assert.ok(locks.isLocked(5) && locks.isLocked(15));
  let overlapHasIt = false;
  const overlapping = locks.lock(9, 10).then((release) => { overlapHasIt = true; return release; });
  await turns(3);
  assert.equal(overlapHasIt, false, 'keys 9 and 10 are still held');
  a();
  await turns(3);
  assert.equal(overlapHasIt, false, 'key 10 is still held');
  b();
  const release = await overlapping;
  release();
  release(); // releasing twice is harmless
  assert.equal(locks.heldCount, 0);
});

test('RangeLocks: a wide waiter is not starved by narrow newcomers that overlap it', async () => {
  const locks = new RangeLocks();
  const first = await locks.lock(0, 0);
  let wideHasIt = false;
  const wide = locks.lock(0, 1_000_000).then((r) => { wideHasIt = true; return r; });
  let narrowHasIt = false;
  const narrow = locks.lock(500, 500).then((r) => { narrowHasIt = true; return r; });
  await turns(3);
  assert.equal(narrowHasIt, false, 'the narrow lock queues behind the wide waiter it overlaps');
  const disjoint = await locks.lock(2_000_000, 2_000_000); // overlaps nobody: goes at once
  disjoint();
  first();
  (await wide)();
  assert.ok(wideHasIt);
  (await narrow)();
  assert.equal(locks.heldCount, 0);
});

test('RangeLocks: random overlapping ranges never share a key and never deadlock; one entry per holder', async () => {
  await fc.assert(fc.asyncProperty(
    fc.array(fc.record({ first: fc.nat(20), span: fc.nat(6), hold: fc.nat(3) }), { minLength: 2, maxLength: 16 }),
    async (tasks) => {
      const locks = new RangeLocks();
      const holders = new Map<number, number>();
      await Promise.all(tasks.map(async (t, id) => {
        const release = await locks.lock(t.first, t.first + t.span);
        assert.ok(locks.heldCount <= tasks.length);
        for (let k = t.first; k <= t.first + t.span; k++) {
          assert.equal(holders.get(k), undefined, `key ${k} held by task ${holders.get(k)} and ${id}`);
          holders.set(k, id);
        }
        await turns(t.hold);
        for (let k = t.first; k <= t.first + t.span; k++) holders.delete(k);
        release();
      }));
      assert.equal(locks.heldCount, 0);
    },
  ), { numRuns: 200 });
});

test('Gate: shared holders run together; exclusive waits for them and runs alone', async () => {
  const gate = new Gate();
  const s1 = await gate.enterShared();
  const s2 = await gate.enterShared();
  let exclusiveIn = false;
  const ex = gate.enterExclusive().then((release) => { exclusiveIn = true; return release; });
  await turns(3);
  assert.equal(exclusiveIn, false, 'exclusive waits for shared holders');
  s1();
  await turns(3);
  assert.equal(exclusiveIn, false, 'one shared holder is still in');
  s2();
  const releaseEx = await ex;
  assert.ok(exclusiveIn);
  let sharedIn = false;
  const s3 = gate.enterShared().then((release) => { sharedIn = true; return release; });
  await turns(3);
  assert.equal(sharedIn, false, 'shared waits while exclusive is held');
  releaseEx();
  (await s3)();
});

test('Gate: a waiting exclusive blocks new shared holders, so a stream of writes cannot starve it', async () => {
  const gate = new Gate();
  const s1 = await gate.enterShared();
  const order: string[] = [];
  const ex = gate.enterExclusive().then((release) => { order.push('exclusive'); return release; });
  const late = gate.enterShared().then((release) => { order.push('late shared'); return release; });
  await turns(3);
  assert.deepEqual(order, []);
  s1();
  (await ex)();
  (await late)();
  assert.deepEqual(order, ['exclusive', 'late shared']);
});

test('Gate: under random shared/exclusive traffic an exclusive holder is always alone, and everyone gets in', async () => {
  await fc.assert(fc.asyncProperty(
    fc.array(fc.record({ exclusive: fc.boolean(), delay: fc.nat(3), hold: fc.nat(3) }), { minLength: 1, maxLength: 16 }),
    async (tasks) => {
      const gate = new Gate();
      let shared = 0;
      let exclusive = 0;
      await Promise.all(tasks.map(async (t) => {
        await turns(t.delay);
        const release = t.exclusive ? await gate.enterExclusive() : await gate.enterShared();
        if (t.exclusive) exclusive++; else shared++;
        assert.ok(exclusive === 0 || (exclusive === 1 && shared === 0), `exclusive ${exclusive}, shared ${shared}`);
        await turns(t.hold);
        if (t.exclusive) exclusive--; else shared--;
        release();
      }));
    },
  ), { numRuns: 200 });
});
