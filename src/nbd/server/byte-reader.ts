// Exact-length reads from a stream socket, with backpressure: the socket is paused while more
// than HIGH_WATER bytes sit unread, so a client that floods us costs bounded memory. The
// decoding itself is the protocol layer's IncomingBuffer.
import type { Duplex } from 'node:stream';
import { IncomingBuffer } from '../protocol/incoming.js';

const HIGH_WATER = 4 * 1024 * 1024;

export class ConnectionClosed extends Error {
  constructor(reason = 'connection closed by the client') { super(reason); }
}

export class ByteReader {
  private readonly buffer = new IncomingBuffer();
  private waiting: { need: number; resolve: () => void; reject: (err: Error) => void } | null = null;
  private ended: Error | null = null;
  private readonly onData = (chunk: Buffer): void => {
    this.buffer.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    if (this.buffer.available > Math.max(HIGH_WATER, this.waiting?.need ?? 0)) this.socket.pause();
    this.wake();
  };
  private readonly onEnd = (): void => { this.finish(new ConnectionClosed()); };
  private readonly onError = (err: Error): void => { this.finish(new ConnectionClosed(`connection failed: ${err.message}`)); };

  constructor(private readonly socket: Duplex) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  get buffered(): number { return this.buffer.available; }

  /** Exactly n bytes (n at most what HIGH_WATER lets accumulate plus one chunk: callers bound n). */
  async read(n: number): Promise<Uint8Array> {
    for (;;) {
      const bytes = this.buffer.take(n);
      if (bytes) { this.resumeIfLow(); return bytes; }
      if (this.ended) throw this.ended;
      this.socket.resume();
      await new Promise<void>((resolve, reject) => { this.waiting = { need: n, resolve, reject }; });
    }
  }

  /** Drop n bytes as they arrive, keeping none of them (a payload we refuse). */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      left -= this.buffer.skip(left);
      if (left === 0) break;
      if (this.ended) throw this.ended;
      this.socket.resume();
      await new Promise<void>((resolve, reject) => { this.waiting = { need: 1, resolve, reject }; });
    }
    this.resumeIfLow();
  }

  /** Stop reading this socket and forget what was buffered (STARTTLS: plaintext sent after it is discarded). */
  detach(): void {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    this.buffer.clear();
  }

  private resumeIfLow(): void {
    if (this.buffer.available < HIGH_WATER / 2) this.socket.resume();
  }

  private wake(): void {
    const w = this.waiting;
    if (w && this.buffer.available >= w.need) { this.waiting = null; w.resolve(); }
  }

  private finish(err: Error): void {
    this.ended ??= err;
    const w = this.waiting;
    if (w) { this.waiting = null; w.reject(this.ended); }
  }
}
