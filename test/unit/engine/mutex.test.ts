// Mutex, KeyedLocks and Gate: exclusion, ordering, no deadlock, errors release.
import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Gate } from '../../../src/engine/gate.js';
import { KeyedLocks, Mutex } from '../../../src/engine/mutex.js';

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

test('KeyedLocks: one holder per key, different keys at once, all released', async () => {
  const locks = new KeyedLocks();
  const a = await locks.lock(1);
  const b = await locks.lock(2); // a different key is not held up
  assert.ok(locks.isLocked(1) && locks.isLocked(2));
  let secondHasIt = false;
  const second = locks.lock(1).then((release) => { secondHasIt = true; return release; });
  await turns(3);
  assert.equal(secondHasIt, false, 'key 1 is still held');
  a();
  const release = await second;
  assert.ok(secondHasIt);
  release();
  b();
  assert.equal(locks.size, 0);
  assert.equal(locks.isLocked(1), false);
});

test('KeyedLocks.lockAll: overlapping key sets in any order never deadlock and never share a key', async () => {
  await fc.assert(fc.asyncProperty(
    fc.array(fc.record({ keys: fc.uniqueArray(fc.nat(5), { minLength: 1, maxLength: 4 }), hold: fc.nat(3) }), { minLength: 2, maxLength: 12 }),
    async (tasks) => {
      const locks = new KeyedLocks();
      const holders = new Map<number, number>();
      await Promise.all(tasks.map(async (t, id) => {
        const release = await locks.lockAll(t.keys);
        for (const k of t.keys) {
          assert.equal(holders.get(k), undefined, `key ${k} held by task ${holders.get(k)} and ${id}`);
          holders.set(k, id);
        }
        await turns(t.hold);
        for (const k of t.keys) holders.delete(k);
        release();
      }));
      assert.equal(locks.size, 0);
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
