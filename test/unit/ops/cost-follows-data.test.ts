// Walking operations cost what the images hold, not their virtual size: an empty 64 TiB QED
// image converts, compares and rebases onto an empty QED backing file with a bounded number
// of block status requests and file reads (a chunk-by-chunk walk makes one request per 2 MiB:
// tens of millions). The assertions count requests, never time.
import test from 'node:test';
import assert from 'node:assert/strict';
import { CheckedDevice } from '../../../src/engine/checked-device.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { compareImages } from '../../../src/ops/compare.js';
import { convertImage } from '../../../src/ops/convert.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';
import { rebaseImage } from '../../../src/ops/rebase.js';
import { commitImage } from '../../../src/ops/commit.js';
import { mapChain } from '../../../src/ops/map.js';
import { measureImage } from '../../../src/ops/measure.js';
import { ReadSpyStore } from '../../support/read-spy.js';

const TiB = 2 ** 40;
/** Block status requests an operation may make on an empty 64 TiB image: a constant, not one per stride. */
const SMALL = 16;

/** Counts block status requests on every device (the walk's unit of work), whole-range and bounded alike. */
function countStatusCalls(): { calls: () => number; restore: () => void } {
  let calls = 0;
  const proto = CheckedDevice.prototype as CheckedDevice & { layerStatusUpTo?: CheckedDevice['layerStatus'] };
  const whole = proto.layerStatus;
  const bounded = proto.layerStatusUpTo;
  proto.layerStatus = function (this: CheckedDevice, ...args: Parameters<CheckedDevice['layerStatus']>) {
    calls++;
    return whole.apply(this, args);
  };
  if (bounded) {
    proto.layerStatusUpTo = function (this: CheckedDevice, ...args: unknown[]) {
      calls++;
      return (bounded as (...a: unknown[]) => ReturnType<CheckedDevice['layerStatus']>).apply(this, args);
    };
  }
  return { calls: () => calls, restore: () => { proto.layerStatus = whole; if (bounded) proto.layerStatusUpTo = bounded; } };
}
const MiB = 2 ** 20;

test('an empty 64 TiB image converts and compares with a bounded number of reads, and the data that is there is copied', async () => {
  const memory = new MemoryStore();
  await createImage('big.qed', { store: memory, size: 64 * TiB });
  const device = await openDevice('big.qed', { store: memory });
  await device.write(new Uint8Array(64 * 1024).fill(7), 40 * TiB);
  await device.close();
  const store = new ReadSpyStore(memory);
  const reads = (): number => store.reads;
  const status = countStatusCalls();
  try {
    // A walk in 256 MiB steps made 2^18 requests per layer for 64 TiB; one per 2 MiB, 2^25.
    // Steps bounded by runs instead: a few requests for the empty stretches and the cluster.
    await convertImage('big.qed', 'copy.qed', { store, targetFormat: 'qed' });
    assert.ok(status.calls() <= SMALL, `convert made ${status.calls()} block status requests`);
    assert.ok(reads() < 20_000, `convert made ${reads()} reads`);
    const before = { reads: reads(), calls: status.calls() };
    assert.deepEqual(await compareImages('big.qed', 'copy.qed', { store }), { kind: 'identical', sizeMismatch: false });
    assert.ok(status.calls() - before.calls <= SMALL, `compare made ${status.calls() - before.calls} block status requests`);
    assert.ok(reads() - before.reads < 20_000, `compare made ${reads() - before.reads} reads`);
  } finally {
    status.restore();
  }
  const copy = await openDevice('copy.qed', { store: memory, readOnly: true });
  const buf = new Uint8Array(64 * 1024);
  await copy.read(buf, 40 * TiB);
  assert.ok(buf.every((b) => b === 7));
  await copy.close();
});

test('rebasing an empty overlay onto an empty QED backing file reads only metadata', async () => {
  const memory = new MemoryStore();
  await createImage('new.qed', { store: memory, size: 4 * TiB });
  await createImage('ov.qed', { store: memory, size: 4 * TiB });
  const ov = await openDevice('ov.qed', { store: memory });
  await ov.write(new Uint8Array(MiB).fill(3), MiB);
  await ov.close();
  const store = new ReadSpyStore(memory);
  const reads = (): number => store.reads;
  await rebaseImage('ov.qed', 'new.qed', { store, backingFormat: 'qed' });
  assert.ok(reads() < 20_000, `rebase made ${reads()} reads`);
  const check = await openDevice('ov.qed', { store: memory, readOnly: true });
  assert.equal(check.backing?.path, 'new.qed');
  const buf = new Uint8Array(MiB);
  await check.read(buf, MiB);
  assert.ok(buf.every((b) => b === 3));
  await check.close();
});

test('map, measure, commit and rebase of empty 64 TiB images make a bounded number of block status requests', async () => {
  const memory = new MemoryStore();
  await createImage('base.qed', { store: memory, size: 64 * TiB });
  await createImage('other.qed', { store: memory, size: 64 * TiB });
  await createImage('top.qed', { store: memory, size: 64 * TiB, backingFile: 'base.qed', backingFormat: 'qed' });
  const status = countStatusCalls();
  try {
    let before = status.calls();
    const top = await openDevice('top.qed', { store: memory, readOnly: true });
    assert.deepEqual((await mapChain(top, 0, top.size)).map((e) => [e.start, e.length, e.depth, e.present]), [[0, 64 * TiB, 1, false]]);
    const viaDevice: unknown[] = [];
    for await (const e of top.blockStatus()) viaDevice.push(e);
    assert.equal(viaDevice.length, 1);
    await top.close();
    assert.ok(status.calls() - before <= SMALL, `map made ${status.calls() - before} block status requests`);

    before = status.calls();
    assert.equal((await measureImage({ source: 'top.qed', targetFormat: 'qed', store: memory })).required, 327680);
    assert.ok(status.calls() - before <= SMALL, `measure made ${status.calls() - before} block status requests`);

    before = status.calls();
    await rebaseImage('top.qed', 'other.qed', { store: memory, backingFormat: 'qed' });
    assert.ok(status.calls() - before <= SMALL, `rebase made ${status.calls() - before} block status requests`);

    before = status.calls();
    await commitImage('top.qed', { store: memory });
    assert.ok(status.calls() - before <= SMALL, `commit made ${status.calls() - before} block status requests`);
  } finally {
    status.restore();
  }
});
