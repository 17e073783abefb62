// Locks on ranges of integer keys (guest cluster indexes). One lock per request whatever its
// length, so a request over millions of clusters costs one entry, not millions. Waiters are
// served in arrival order among those that overlap: a wide request is not starved by a stream
// of narrow ones, and a narrow one that overlaps nothing queued ahead of it goes at once.

interface Held { first: number; last: number }
interface Waiter extends Held { grant: () => void }

export class RangeLocks {
  private readonly held: Held[] = [];
  private waiters: Waiter[] = [];

  /** Lock keys first..last inclusive; resolves to the release function. */
  lock(first: number, last: number): Promise<() => void> {
    if (!this.blocked(first, last, this.waiters.length)) return Promise.resolve(this.take(first, last));
    return new Promise((resolve) => this.waiters.push({ first, last, grant: () => resolve(this.take(first, last)) }));
  }

  /** True when some key of first..last is held (an allocation or zeroing is in progress there). */
  isLocked(first: number, last = first): boolean {
    return this.held.some((h) => h.first <= last && first <= h.last);
  }

  get heldCount(): number { return this.held.length; }

  private take(first: number, last: number): () => void {
    const entry = { first, last };
    this.held.push(entry);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held.splice(this.held.indexOf(entry), 1);
      this.grantWaiters();
    };
  }

  /** Overlaps a held range, or a waiter queued before position `before`. */
  private blocked(first: number, last: number, before: number): boolean {
    if (this.isLocked(first, last)) return true;
    for (let i = 0; i < before; i++) {
      const w = this.waiters[i]!;
      if (w.first <= last && first <= w.last) return true;
    }
    return false;
  }

  /** Grant, in arrival order, every waiter that overlaps neither a held range nor an earlier waiter. */
  private grantWaiters(): void {
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      const overlapsEarlier = still.some((e) => e.first <= w.last && w.first <= e.last);
      if (!overlapsEarlier && !this.isLocked(w.first, w.last)) w.grant(); // takes its range now
      else still.push(w);
    }
    this.waiters = still;
  }
}
