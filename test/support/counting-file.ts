// A BlockFile wrapper that counts what passes through it (reads, bytes, the largest single
// read or write, flushes) and samples the process's memory at every call, so a test can
// bound the work and the memory of a repair rather than time it.
import type { BlockFile } from '../../src/io/block-file.js';

export class CountingFile implements BlockFile {
  reads = 0;
  bytesRead = 0;
  largestRead = 0;
  bytesWritten = 0;
  largestWrite = 0;
  flushes = 0;
  truncates = 0;
  /** The most JS heap plus array-buffer memory seen at any call, minus what was in use at construction. */
  peakMemoryGrowth = 0;
  private readonly baseline = memoryInUse();

  constructor(readonly inner: BlockFile) {}

  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }

  read(buf: Uint8Array, offset: number): Promise<number> {
    this.sample();
    this.reads++;
    this.bytesRead += buf.length;
    this.largestRead = Math.max(this.largestRead, buf.length);
    return this.inner.read(buf, offset);
  }
  write(buf: Uint8Array, offset: number): Promise<void> {
    this.sample();
    this.bytesWritten += buf.length;
    this.largestWrite = Math.max(this.largestWrite, buf.length);
    return this.inner.write(buf, offset);
  }
  flush(): Promise<void> { this.sample(); this.flushes++; return this.inner.flush(); }
  truncate(size: number): Promise<void> { this.sample(); this.truncates++; return this.inner.truncate(size); }
  size(): Promise<number> { this.sample(); return this.inner.size(); }
  close(): Promise<void> { return this.inner.close(); }

  private sample(): void {
    this.peakMemoryGrowth = Math.max(this.peakMemoryGrowth, memoryInUse() - this.baseline);
  }
}

function memoryInUse(): number {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}
