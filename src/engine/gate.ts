// A shared/exclusive gate. Allocating data writes hold it shared; growing the file with
// truncate holds it exclusively. Without it, a truncate racing a write into freshly allocated
// space past the old end could run after that write and cut it off: the thread pool gives no
// order between concurrent pwrite and ftruncate. Exclusive waiters block new shared holders,
// so a flush is never starved by a stream of writes.

export class Gate {
  private shared = 0;
  private exclusive = false;
  private waitingExclusive = 0;
  private wakers: Array<() => void> = [];

  async enterShared(): Promise<() => void> {
    while (this.exclusive || this.waitingExclusive > 0) await this.wait();
    this.shared++;
    return () => { this.shared--; this.wake(); };
  }

  async enterExclusive(): Promise<() => void> {
    this.waitingExclusive++;
    try {
      while (this.exclusive || this.shared > 0) await this.wait();
    } finally {
      this.waitingExclusive--;
    }
    this.exclusive = true;
    return () => { this.exclusive = false; this.wake(); };
  }

  private wait(): Promise<void> {
    return new Promise((resolve) => this.wakers.push(resolve));
  }

  private wake(): void {
    const wakers = this.wakers;
    this.wakers = [];
    for (const w of wakers) w();
  }
}
