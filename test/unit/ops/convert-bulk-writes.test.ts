// convert opens its target for bulk writes (a local file then queues and merges large writes,
// io/write-queue.ts), and nothing else: not the source, not a backing file of the target.
import test from 'node:test';
import assert from 'node:assert/strict';
import type { BlockFile, FileStore, OpenFileOptions, OpenMode } from '../../../src/io/block-file.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { convertImage } from '../../../src/ops/convert.js';

class OpenRecorder implements FileStore {
  readonly opens: Array<{ path: string; mode: OpenMode; bulkWrites: boolean }> = [];
  constructor(private readonly memory: MemoryStore) {}
  open(path: string, mode: OpenMode, options?: OpenFileOptions): Promise<BlockFile> {
    this.opens.push({ path, mode, bulkWrites: options?.bulkWrites === true });
    return this.memory.open(path, mode, options);
  }
  create(path: string, options?: OpenFileOptions): Promise<BlockFile> { return this.memory.create(path, options); }
  resolveBacking(imagePath: string, backingName: string): string { return this.memory.resolveBacking(imagePath, backingName); }
  identity(path: string): Promise<string> { return this.memory.identity(path); }
}

test('convert opens only its target for bulk writes', async () => {
  const memory = new MemoryStore();
  memory.add('source.raw').writeSync(new Uint8Array(1024 * 1024).fill(7), 0);
  memory.add('base.raw').writeSync(new Uint8Array(1024 * 1024).fill(1), 0);
  const store = new OpenRecorder(memory);
  await convertImage('source.raw', 'target.qed', { sourceFormat: 'raw', targetFormat: 'qed', backingFile: 'base.raw', backingFormat: 'raw', store });
  const bulk = store.opens.filter((o) => o.bulkWrites).map((o) => `${o.path} ${o.mode}`);
  assert.deepEqual(bulk, ['target.qed read-write']);
  assert.ok(store.opens.some((o) => o.path === 'source.raw') && store.opens.some((o) => o.path === 'base.raw'), JSON.stringify(store.opens));
});
