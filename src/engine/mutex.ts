// Async exclusion for a single owner (writeback). Guest ranges use range-locks.ts.

export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  /** Run fn with the mutex held; callers queue in arrival order. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    let release!: () => void;
    const next = new Promise<void>((r) => { release = r; });
    const previous = this.tail;
    this.tail = previous.then(() => next);
    await previous;
    try { return await fn(); } finally { release(); }
  }
}
