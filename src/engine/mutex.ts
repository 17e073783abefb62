// Async exclusion for a single owner (writeback) and for per-key ranges (cluster allocation).

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

/**
 * Locks on integer keys (guest cluster indexes). Taking a set of keys in ascending order from
 * every caller rules out deadlock; a key with no waiters costs nothing.
 */
export class KeyedLocks {
  private held = new Map<number, Promise<void>>();

  async lockAll(keys: number[]): Promise<() => void> {
    const releases: Array<() => void> = [];
    for (const key of [...keys].sort((a, b) => a - b)) releases.push(await this.lock(key));
    return () => { for (const release of releases) release(); };
  }

  async lock(key: number): Promise<() => void> {
    for (;;) {
      const current = this.held.get(key);
      if (!current) break;
      await current;
    }
    let release!: () => void;
    const done = new Promise<void>((r) => { release = r; });
    this.held.set(key, done);
    return () => { this.held.delete(key); release(); };
  }

  /** True when a key is locked: used to tell whether an allocation is in progress. */
  isLocked(key: number): boolean { return this.held.has(key); }
  get size(): number { return this.held.size; }
}
