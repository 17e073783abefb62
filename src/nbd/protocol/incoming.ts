// An accumulating input buffer: bytes arrive in chunks of any size, the decoder takes exact
// lengths. Pure (no I/O): the server pushes what the socket delivered. Copies only when a
// requested run spans chunks; a payload being discarded is skipped without being kept.

export class IncomingBuffer {
  private chunks: Uint8Array[] = [];
  private head = 0; // bytes of chunks[0] already consumed
  private total = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  get available(): number { return this.total; }

  /** Exactly n bytes, or null when fewer have arrived. The result may share memory with a pushed chunk. */
  take(n: number): Uint8Array | null {
    if (n > this.total) return null;
    if (n === 0) return new Uint8Array(0);
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.consume(n);
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0]!;
      const part = Math.min(chunk.length - this.head, n - filled);
      out.set(chunk.subarray(this.head, this.head + part), filled);
      filled += part;
      this.consume(part);
    }
    return out;
  }

  /** Drop up to n bytes; returns how many were dropped. */
  skip(n: number): number {
    const dropped = Math.min(n, this.total);
    let left = dropped;
    while (left > 0) {
      const part = Math.min(this.chunks[0]!.length - this.head, left);
      this.consume(part);
      left -= part;
    }
    return dropped;
  }

  /** Forget everything buffered (bytes pipelined in plaintext before TLS starts). */
  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.total = 0;
  }

  private consume(n: number): void {
    this.head += n;
    this.total -= n;
    if (this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
