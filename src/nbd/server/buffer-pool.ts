// Read buffers reused once their reply has been handed to the kernel. Allocating a fresh
// 256 KiB buffer per read made the garbage collector a quarter of the server's time on
// sequential copies (nbdcopy); reuse keeps that flat. Bounded: at most MAX_POOLED_BYTES kept.

const MAX_POOLED_BYTES = 64 * 1024 * 1024;
const MAX_PER_SIZE = 128;

export class BufferPool {
  private readonly free = new Map<number, Uint8Array[]>();
  private pooledBytes = 0;

  /** A buffer of exactly `length` bytes; its content is whatever it held before. */
  take(length: number): Uint8Array {
    const list = this.free.get(length);
    const reused = list?.pop();
    if (reused) { this.pooledBytes -= length; return reused; }
    return new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length);
  }

  give(buffer: Uint8Array): void {
    const length = buffer.length;
    if (this.pooledBytes + length > MAX_POOLED_BYTES) return;
    let list = this.free.get(length);
    if (!list) { list = []; this.free.set(length, list); }
    if (list.length >= MAX_PER_SIZE) return;
    list.push(buffer);
    this.pooledBytes += length;
  }
}
