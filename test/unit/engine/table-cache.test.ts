// The table cache: bounded by its capacity in clean chunks, never evicting dirty or pinned
// ones (the owner writes those back), asking the owner for writeback under pressure, loading
// each chunk once however many callers want it.
import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TABLE_CHUNK_BYTES, TableCache } from '../../../src/engine/table-cache.js';

const C = TABLE_CHUNK_BYTES;

/** A cache over a fake table file whose chunk at offset k*C holds k in its first byte. */
function cache(capacityChunks: number, maxLoads = 10_000) {
  const loads: number[] = [];
  const cacheObject = new TableCache(async (hostOffset, into) => {
    loads.push(hostOffset);
    // A loop that keeps reloading is a livelock: fail it instead of spinning forever.
    if (loads.length > maxLoads) throw new Error(`more than ${maxLoads} loads: the cache keeps reloading (livelock)`);
    await new Promise<void>((resolve) => setImmediate(resolve));
    into[0] = hostOffset / C;
  }, capacityChunks * C);
  return { cache: cacheObject, loads };
}

test('clean chunks never exceed the capacity, whatever the access pattern', async () => {
  await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.array(fc.nat(20), { maxLength: 60 }), async (capacity, pattern) => {
    const { cache: c } = cache(capacity);
    for (const k of pattern) {
      const chunk = await c.acquire(k * C);
      assert.equal(chunk.bytes[0], k, 'the chunk holds its own offset\'s bytes');
      c.release(chunk);
      assert.ok(c.sizeBytes <= capacity * C, `${c.sizeBytes / C} chunks cached, capacity ${capacity}`);
    }
  }), { numRuns: 150 });
});

test('eviction is least recently used: a hit protects a chunk', async () => {
  const { cache: c, loads } = cache(2);
  for (const k of [0, 1, 0, 2]) c.release(await c.acquire(k * C)); // 0 was used after 1: 1 goes
  loads.length = 0;
  c.release(await c.acquire(0));
  assert.deepEqual(loads, [], 'chunk 0 stayed');
  c.release(await c.acquire(1 * C));
  assert.deepEqual(loads, [1 * C], 'chunk 1 was evicted and reloads');
});

test('concurrent acquires of one chunk load it once and share one object', async () => {
  const { cache: c, loads } = cache(4);
  const chunks = await Promise.all([0, 1, 2, 3, 4].map(() => c.acquire(7 * C)));
  assert.deepEqual(loads, [7 * C]);
  assert.ok(chunks.every((chunk) => chunk === chunks[0]));
  assert.equal(chunks[0]!.pins, 5);
  for (const chunk of chunks) c.release(chunk);
  assert.equal(chunks[0]!.pins, 0);
});

test('dirty chunks are never evicted, and their changes survive any amount of other traffic', async () => {
  const { cache: c } = cache(2);
  const dirty = await c.acquire(0);
  dirty.bytes[1] = 0xdd;
  c.markDirty(dirty);
  c.release(dirty);
  for (let k = 1; k < 30; k++) c.release(await c.acquire(k * C));
  const again = await c.acquire(0);
  assert.equal(again, dirty, 'the same object, never reloaded');
  assert.equal(again.bytes[1], 0xdd);
  assert.deepEqual(c.dirtyChunks(), [dirty]);
  c.release(again);
});

test('a pinned chunk is not evicted while held, even far over capacity', async () => {
  const { cache: c } = cache(1);
  const pinned = await c.acquire(0);
  pinned.bytes[1] = 0x99; // changed in place while held (not yet marked dirty)
  for (let k = 1; k < 10; k++) c.release(await c.acquire(k * C));
  const same = await c.acquire(0);
  assert.equal(same, pinned);
  assert.equal(same.bytes[1], 0x99);
  c.release(same);
  c.release(pinned);
});

test('onPressure fires when dirty chunks keep the cache over its bound', async () => {
  const { cache: c } = cache(2);
  let pressure = 0;
  c.onPressure = () => { pressure++; };
  for (const k of [0, 1, 2]) {
    const chunk = await c.acquire(k * C);
    c.markDirty(chunk);
    c.release(chunk);
  }
  assert.ok(pressure > 0, 'three dirty chunks in a two-chunk cache');
  assert.equal(c.dirtyCount, 3);
  // Once the owner wrote them back (marked clean), the next release shrinks the cache.
  for (const chunk of c.dirtyChunks()) chunk.dirty = false;
  c.release(await c.acquire(9 * C));
  assert.ok(c.sizeBytes <= 2 * C);
});

test('a chunk being loaded is not evicted when every other chunk is dirty: acquire completes and pressure is signalled', async () => {
  // Four dirty chunks fill a four-chunk cache. Loading a fifth must hand it to the caller
  // (over the bound for a while) and ask the owner to write back; evicting the new chunk
  // itself would make acquire reload it forever. The loader fails after 50 loads to turn
  // such a livelock into a failure.
  const { cache: c, loads } = cache(4, 50);
  let pressure = 0;
  c.onPressure = () => { pressure++; };
  for (const k of [0, 1, 2, 3]) {
    const chunk = await c.acquire(k * C);
    c.markDirty(chunk);
    c.release(chunk);
  }
  loads.length = 0;
  const fifth = await c.acquire(4 * C);
  assert.equal(fifth.bytes[0], 4);
  assert.deepEqual(loads, [4 * C], 'loaded once');
  c.release(fifth);
  assert.ok(pressure > 0, 'the owner was asked to write back');
});

test('createZeroed makes a zero chunk without reading, and clear forgets everything', async () => {
  const { cache: c, loads } = cache(4);
  const chunk = c.createZeroed(3 * C);
  assert.deepEqual(chunk.bytes, new Uint8Array(C));
  const got = await c.acquire(3 * C);
  assert.equal(got, chunk);
  assert.deepEqual(loads, []);
  c.release(got);
  c.clear();
  assert.equal(c.sizeBytes, 0);
});

test('peek returns a cached chunk without loading or pinning it, and protects it from eviction like a hit', async () => {
  const { cache: c, loads } = cache(2);
  assert.equal(c.peek(0), undefined, 'nothing cached: no load either');
  assert.deepEqual(loads, []);
  for (const k of [0, 1]) c.release(await c.acquire(k * C));
  const peeked = c.peek(0)!;
  assert.equal(peeked.bytes[0], 0);
  assert.equal(peeked.pins, 0, 'not pinned');
  c.release(await c.acquire(2 * C)); // 0 was used after 1: 1 goes
  loads.length = 0;
  assert.ok(c.peek(0) !== undefined, 'chunk 0 stayed');
  assert.equal(c.peek(1 * C), undefined, 'chunk 1 was evicted');
  assert.deepEqual(loads, []);
});
