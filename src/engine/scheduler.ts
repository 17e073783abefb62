// Time and turns, injected: the engine never calls a runtime's timer API directly, so it runs
// wherever its BlockFile runs (Node, a browser, a worker) and tests can drive time themselves.

/** Timers and turns of the event loop, injectable so that tests can drive time. */
export interface Scheduler {
  /** Run `fn` once after `ms`; returns a cancel function. Must not keep a process alive by itself. */
  delay(fn: () => void, ms: number): () => void;
  /** Let queued I/O callbacks and other requests run before continuing a long walk. */
  yieldTurn(): Promise<void>;
  /** Milliseconds from an arbitrary origin, monotonic. */
  now(): number;
}

type Timer = { unref?: () => void };

/** setTimeout wherever it exists; setImmediate when the runtime has it (a 1 ms timer per step would dominate long walks). */
export const defaultScheduler: Scheduler = {
  delay(fn, ms) {
    const timer = globalThis.setTimeout(fn, ms) as unknown as Timer;
    timer.unref?.();
    return () => globalThis.clearTimeout(timer as unknown as Parameters<typeof clearTimeout>[0]);
  },
  yieldTurn() {
    const immediate = (globalThis as { setImmediate?: (fn: () => void) => unknown }).setImmediate;
    return new Promise((resolve) => (immediate ? immediate(resolve) : globalThis.setTimeout(resolve, 0)));
  },
  now() {
    return globalThis.performance.now();
  },
};
