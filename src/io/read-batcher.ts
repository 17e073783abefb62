// Reads that must go to the thread pool are gathered for one turn of the event loop, and
// those that lie back to back in the file become one vectored read (preadv). Every thread-pool
// round trip costs the main thread tens of microseconds on a busy machine (waking a pool
// thread, being descheduled, the completion callback); an NBD client reading sequentially
// with many requests in flight (nbdcopy: 64 per connection) sends adjacent 256 KiB reads
// that arrive together, so several of them share one round trip.
import { readv as readvCallback, readvSync } from 'node:fs';

/** Bytes one vectored read covers at most: replies wait for the whole of it. */
const MAX_MERGED_BYTES = 2 * 1024 * 1024;
/** Buffers one vectored read takes at most (well under IOV_MAX). */
const MAX_MERGED_BUFFERS = 64;
/**
 * Bytes copied on the main thread in one turn of the loop (copyInline): about 150 µs of
 * copying here, so replies and new requests are never held up much longer than that.
 */
const INLINE_BYTES_PER_TURN = 2 * 1024 * 1024;

interface QueuedRead {
  buf: Uint8Array;
  offset: number;
  resolve: (bytesRead: number) => void;
  reject: (err: unknown) => void;
}

export class ReadBatcher {
  private queued: QueuedRead[] = [];

  /**
   * `readOne` reads a request on its own (from `done` on, as NodeFile.readRest does): for a
   * request no neighbour joined, and for what a short or failed vectored read left undone.
   * With `copyInline` (a memory-backed file, where a read is a memory copy that never waits
   * on a device) the gathered reads are copied on the main thread instead, at most
   * INLINE_BYTES_PER_TURN a turn of the loop, the rest in later turns.
   */
  constructor(
    private readonly fd: () => number,
    private readonly readOne: (buf: Uint8Array, offset: number, done: number) => Promise<number>,
    private readonly copyInline = false,
  ) {}

  read(buf: Uint8Array, offset: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (this.queued.length === 0) setImmediate(() => this.flush());
      this.queued.push({ buf, offset, resolve, reject });
    });
  }

  private flush(): void {
    const reads = this.queued;
    this.queued = [];
    reads.sort((a, b) => a.offset - b.offset);
    let copiedInline = 0;
    for (let first = 0; first < reads.length;) {
      if (this.copyInline && copiedInline >= INLINE_BYTES_PER_TURN) {
        // Socket I/O gets its turn before the rest is copied.
        if (this.queued.length === 0) setImmediate(() => this.flush());
        this.queued.push(...reads.slice(first));
        return;
      }
      let end = reads[first]!.offset + reads[first]!.buf.length;
      let next = first + 1;
      while (next < reads.length && next - first < MAX_MERGED_BUFFERS && reads[next]!.offset === end && end + reads[next]!.buf.length - reads[first]!.offset <= MAX_MERGED_BYTES) {
        end += reads[next]!.buf.length;
        next++;
      }
      const group = reads.slice(first, next);
      // A single request over the bound (an NBD read may be 32 MiB) would hold the loop: the pool copies it.
      if (this.copyInline && end - reads[first]!.offset <= INLINE_BYTES_PER_TURN) {
        this.readInline(group);
        copiedInline += end - reads[first]!.offset;
      } else if (group.length === 1) {
        this.settle(group[0]!, 0);
      } else {
        this.readTogether(group);
      }
      first = next;
    }
  }

  private readInline(group: QueuedRead[]): void {
    let bytesRead = 0;
    try { bytesRead = readvSync(this.fd(), group.map((r) => r.buf), group[0]!.offset); } catch { /* left to each request's own read */ }
    this.distribute(group, bytesRead);
  }

  private readTogether(group: QueuedRead[]): void {
    readvCallback(this.fd(), group.map((r) => r.buf), group[0]!.offset, (err, bytesRead) => {
      this.distribute(group, err ? 0 : bytesRead);
    });
  }

  /** Settles the requests a vectored read filled; what it left undone (end of file, a failure) goes to each request's own read, which reports errors with its own offset. */
  private distribute(group: QueuedRead[], bytesRead: number): void {
    let left = bytesRead;
    for (const r of group) {
      const got = Math.min(left, r.buf.length);
      left -= got;
      if (got === r.buf.length) r.resolve(got);
      else this.settle(r, got);
    }
  }

  private settle(r: QueuedRead, done: number): void {
    this.readOne(r.buf, r.offset, done).then(r.resolve, r.reject);
  }
}
