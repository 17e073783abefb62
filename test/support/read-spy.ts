// A FileStore over a MemoryStore that records every read's length, so a test can show that
// a hostile field's claimed size was never used to size a buffer or a read (reliability.md:
// "never memory proportional to a field's claimed size"), and counts reads and writes, so a
// test can show how many file calls a request or a walk made.
import type { BlockFile, FileStore, OpenFileOptions, OpenMode } from '../../src/io/block-file.js';
import type { MemoryFile, MemoryStore } from '../../src/io/memory-file.js';

export class ReadSpyStore implements FileStore {
  largestRead = 0;
  bytesRead = 0;
  reads = 0;
  writes = 0;

  constructor(readonly memory: MemoryStore) {}

  async open(path: string, mode: OpenMode, options?: OpenFileOptions): Promise<BlockFile> { return this.spy(await this.memory.open(path, mode, options)); }
  async create(path: string, options?: OpenFileOptions): Promise<BlockFile> { return this.spy(await this.memory.create(path, options)); }
  resolveBacking(imagePath: string, backingName: string): string { return this.memory.resolveBacking(imagePath, backingName); }
  identity(path: string): Promise<string> { return this.memory.identity(path); }

  /** A spied read-only view of one memory file. */
  view(file: MemoryFile): BlockFile { return this.spy(file.view(true)); }

  private spy(file: BlockFile): BlockFile {
    return {
      path: file.path,
      readOnly: file.readOnly,
      read: (buf, offset) => {
        this.reads++;
        this.bytesRead += buf.length;
        this.largestRead = Math.max(this.largestRead, buf.length);
        return file.read(buf, offset);
      },
      write: (buf, offset) => { this.writes++; return file.write(buf, offset); },
      flush: () => file.flush(),
      size: () => file.size(),
      truncate: (size) => file.truncate(size),
      close: () => file.close(),
    };
  }
}
