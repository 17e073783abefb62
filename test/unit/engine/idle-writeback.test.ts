// The engine takes time from an injected scheduler, never from the runtime's timers: here a
// test clock drives the idle writeback (QEMU's need-check timer) deterministically.
import test from 'node:test';
import assert from 'node:assert/strict';
import type { Scheduler } from '../../../src/engine/scheduler.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { decodeHeader } from '../../../src/format/header.js';
import { QED_F_NEED_CHECK } from '../../../src/format/constants.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';

class TestClock implements Scheduler {
  time = 0;
  private timers: Array<{ at: number; fn: () => void; cancelled: boolean }> = [];
  delay(fn: () => void, ms: number): () => void {
    const timer = { at: this.time + ms, fn, cancelled: false };
    this.timers.push(timer);
    return () => { timer.cancelled = true; };
  }
  yieldTurn(): Promise<void> { return Promise.resolve(); }
  now(): number { return this.time; }
  get pending(): number { return this.timers.filter((t) => !t.cancelled).length; }
  /** Move time on, firing due timers in order (and the ones they arm, if due). */
  async advance(ms: number): Promise<void> {
    const until = this.time + ms;
    for (;;) {
      const due = this.timers.filter((t) => !t.cancelled && t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.time = due.at;
      due.cancelled = true;
      due.fn();
      for (let i = 0; i < 20; i++) await Promise.resolve();
      await new Promise((r) => setImmediate(r));
    }
    this.time = until;
  }
}

function needCheckOnDisk(store: MemoryStore): boolean {
  const header = new Uint8Array(512);
  store.files.get('a.qed')!.readSync(header, 0);
  return (decodeHeader(header).features & QED_F_NEED_CHECK) !== 0n;
}

async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
}

test('after the quiet time, metadata is written back and NEED_CHECK cleared; activity postpones it', async () => {
  const store = new MemoryStore();
  await createImage('a.qed', { store, size: 64 * 1024 * 1024 });
  const clock = new TestClock();
  const device = await openDevice('a.qed', { store, scheduler: clock, idleFlushMs: 1000 });
  await device.write(new Uint8Array(4096).fill(1), 0);
  await device.flush(); // tables written: NEED_CHECK set until the idle writeback clears it
  assert.equal(needCheckOnDisk(store), true);
  await clock.advance(600);
  await device.write(new Uint8Array(4096).fill(2), 8 * 1024 * 1024); // activity at t=600
  await clock.advance(600); // t=1200: only 600 quiet
  await settle();
  assert.equal(needCheckOnDisk(store), true, 'not quiet long enough yet');
  await clock.advance(500); // t=1700: 1100 quiet
  await settle();
  assert.equal(needCheckOnDisk(store), false, 'cleared after the quiet time');
  const copy = new MemoryStore();
  copy.add('a.qed', store.files.get('a.qed')!.clone());
  const reader = await openDevice('a.qed', { store: copy, readOnly: true });
  const buf = new Uint8Array(4096);
  await reader.read(buf, 8 * 1024 * 1024);
  assert.equal(buf[0], 2, 'the write before the quiet spell is on disk without a close');
  await reader.close();
  await device.close();
  assert.equal(clock.pending, 0, 'close cancels the idle timer');
});
