// A FileStore over MemoryStore whose I/O completes out of order, for concurrency tests.
//
// MemoryFile completes every request in a microtask, in issue order, so concurrent requests
// never interleave the way they do on a real disk. Here each request completes after a
// seeded random number of event-loop turns (setImmediate hops), so a fast-check seed picks
// an interleaving and a failing one replays.
//
// It also turns livelocks into failures without any wall-clock limit: every request counts
// against a budget that a test resets per step, and a step that issues more requests than
// any finite amount of work needs fails with LivelockError instead of spinning forever.
import type { BlockFile, FileStore, OpenMode } from '../../src/io/block-file.js';
import { MemoryStore } from '../../src/io/memory-file.js';

export class LivelockError extends Error {}

export class JitterStore implements FileStore {
  readonly memory = new MemoryStore();
  private rng: number;
  /** Requests left in the current step. */
  budget = Infinity;
  /** Largest hop count; 0 makes every request complete in a microtask, as MemoryFile does. */
  maxHops: number;
  requests = 0;

  constructor(seed: number, maxHops = 3) {
    this.rng = (seed >>> 0) || 0x9e3779b9;
    this.maxHops = maxHops;
  }

  /** Start a step with `budget` requests allowed. */
  resetBudget(budget: number): void { this.budget = budget; }

  async open(path: string, mode: OpenMode): Promise<BlockFile> {
    return this.wrap(await this.memory.open(path, mode));
  }

  async create(path: string): Promise<BlockFile> {
    return this.wrap(await this.memory.create(path));
  }

  resolveBacking(imagePath: string, backingName: string): string { return this.memory.resolveBacking(imagePath, backingName); }
  identity(path: string): Promise<string> { return this.memory.identity(path); }

  private next(): number {
    let x = this.rng;
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    this.rng = x;
    return x;
  }

  private async delay<T>(op: () => Promise<T>): Promise<T> {
    this.requests++;
    if (--this.budget < 0) {
      throw new LivelockError(`more I/O requests in one step than any finite amount of work needs (livelock): ${this.requests} so far`);
    }
    if (this.maxHops === 0) return op();
    const r = this.next();
    const hops = r % (this.maxHops + 1);
    // A real request takes effect at some moment between its issue and its completion:
    // either at once or just before it completes, chosen per request.
    const early = (r & 0x100) === 0;
    const result = early ? op() : null;
    for (let i = 0; i < hops; i++) await new Promise<void>((resolve) => setImmediate(resolve));
    return result ?? op();
  }

  private wrap(file: BlockFile): BlockFile {
    return {
      path: file.path,
      readOnly: file.readOnly,
      read: (buf, offset) => this.delay(() => file.read(buf, offset)),
      write: (buf, offset) => this.delay(() => file.write(buf, offset)),
      flush: () => this.delay(() => file.flush()),
      size: () => this.delay(() => file.size()),
      truncate: (size) => this.delay(() => file.truncate(size)),
      close: () => file.close(),
    };
  }
}
