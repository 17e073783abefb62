// A sparse in-memory BlockFile for tests and property checks: pages are allocated only when
// written, so a multi-gigabyte virtual image costs only what was written to it. A MemoryStore
// made with `locking: true` locks like NodeFileStore (one writer per file), with the lock
// bytes kept in a table.
import type { BlockFile, FileStore, OpenFileOptions, OpenMode } from './block-file.js';
import { type ByteLocks, type LockAccess, lockImage } from './image-lock.js';
import { IoError, UsageError } from '../base/errors.js';

const PAGE = 64 * 1024;

export class MemoryFile implements BlockFile {
  readonly path: string;
  readOnly = false;
  private pages = new Map<number, Uint8Array>();
  private length = 0;
  private closed = false;
  /** The QEMU-scheme lock bytes of the views MemoryStore opened on this file. */
  readonly locks = new LockTable();

  constructor(path = 'memory') { this.path = path; }

  /** A read-only or read-write view sharing this file's bytes (as a second open() would). */
  view(readOnly: boolean): BlockFile {
    const self = this;
    return {
      path: this.path, readOnly,
      read: (b, o) => self.read(b, o),
      write: (b, o) => readOnly ? Promise.reject(new IoError('file is read-only', { path: self.path })) : self.write(b, o),
      flush: () => Promise.resolve(),
      size: () => self.size(),
      truncate: (s) => readOnly ? Promise.reject(new IoError('file is read-only', { path: self.path })) : self.truncate(s),
      close: () => Promise.resolve(),
    };
  }

  readSync(buf: Uint8Array, offset: number): number {
    buf.fill(0);
    const end = Math.min(offset + buf.length, this.length);
    for (let pos = offset; pos < end;) {
      const pageIndex = Math.floor(pos / PAGE);
      const inPage = pos - pageIndex * PAGE;
      const n = Math.min(PAGE - inPage, end - pos);
      const page = this.pages.get(pageIndex);
      if (page) buf.set(page.subarray(inPage, inPage + n), pos - offset);
      pos += n;
    }
    return Math.max(0, end - offset);
  }

  writeSync(buf: Uint8Array, offset: number): void {
    for (let done = 0; done < buf.length;) {
      const pos = offset + done;
      const pageIndex = Math.floor(pos / PAGE);
      const inPage = pos - pageIndex * PAGE;
      const n = Math.min(PAGE - inPage, buf.length - done);
      let page = this.pages.get(pageIndex);
      if (!page) { page = new Uint8Array(PAGE); this.pages.set(pageIndex, page); }
      page.set(buf.subarray(done, done + n), inPage);
      done += n;
    }
    this.length = Math.max(this.length, offset + buf.length);
  }

  truncateSync(size: number): void {
    if (size < this.length) {
      for (const index of [...this.pages.keys()]) {
        const start = index * PAGE;
        if (start >= size) this.pages.delete(index);
        else if (start + PAGE > size) this.pages.get(index)!.fill(0, size - start);
      }
    }
    this.length = size;
  }

  get sizeSync(): number { return this.length; }

  async read(buf: Uint8Array, offset: number): Promise<number> { this.check(); return this.readSync(buf, offset); }
  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.check();
    if (this.readOnly) throw new IoError('file is read-only', { path: this.path });
    this.writeSync(buf, offset);
  }
  async flush(): Promise<void> { this.check(); }
  async size(): Promise<number> { this.check(); return this.length; }
  async truncate(size: number): Promise<void> { this.check(); this.truncateSync(size); }
  async close(): Promise<void> { this.closed = true; }

  /** Reopen after close (tests reopen images many times). */
  reopen(): this { this.closed = false; return this; }

  /** Deep copy, for snapshotting a disk state. */
  clone(path = this.path): MemoryFile {
    const copy = new MemoryFile(path);
    for (const [i, p] of this.pages) copy.pages.set(i, p.slice());
    copy.length = this.length;
    return copy;
  }

  private check(): void {
    if (this.closed) throw new IoError('file is closed', { path: this.path });
  }
}

/** A FileStore of memory files keyed by normalised path; backing names resolve like POSIX paths. */
/**
 * Files held in memory: for tests, for a browser, or for images that never touch a disk.
 * Paths are plain strings; backing names resolve like POSIX paths.
 */
export class MemoryStore implements FileStore {
  /** @internal */
  readonly files = new Map<string, MemoryFile>();
  /**
   * Off by default: a process's locks die with it, but a memory file outlives the devices a
   * crash simulation abandons without closing, and their locks would refuse the reopen.
   */
  private readonly locking: boolean;

  constructor(options: { locking?: boolean } = {}) { this.locking = options.locking ?? false; }

  /** @internal Put a file in place (tests build hostile images this way). */
  add(path: string, file: MemoryFile = new MemoryFile(path)): MemoryFile {
    this.files.set(normalise(path), file);
    return file;
  }

  /** Open a file of this store (see FileStore.open). */
  async open(path: string, mode: OpenMode, options: OpenFileOptions = {}): Promise<BlockFile> {
    if (options.forceShare && mode !== 'read-only') {
      throw new UsageError('force-share can only be used with read-only images', { path });
    }
    const file = this.files.get(normalise(path));
    if (!file) throw new IoError(`could not open '${path}': no such file`, { path, errno: 'ENOENT' });
    const access: LockAccess = mode === 'read-write' ? 'read-write' : options.forceShare ? 'read-only-force-share' : 'read-only';
    return this.lockedView(file, file.view(mode === 'read-only'), access, path, options);
  }

  async create(path: string, options: OpenFileOptions = {}): Promise<BlockFile> {
    // Check against the users of the file being replaced before replacing it.
    const old = this.files.get(normalise(path));
    if (old && options.exclusive) {
      throw new IoError(`could not create '${path}': File exists`, { path, errno: 'EEXIST' });
    }
    if (old) await (await this.lockedView(old, old.view(false), 'create', path, options)).close();
    const file = this.add(path);
    return this.lockedView(file, file.view(false), 'create', path, options);
  }

  resolveBacking(imagePath: string, backingName: string): string {
    if (backingName.startsWith('/')) return normalise(backingName);
    const dir = normalise(imagePath).split('/').slice(0, -1).join('/');
    return normalise(dir === '' ? backingName : `${dir}/${backingName}`);
  }

  async identity(path: string): Promise<string> { return normalise(path); }
  async remove(path: string): Promise<void> {
    if (!this.files.delete(normalise(path))) throw new IoError(`could not remove '${path}': No such file or directory`, { path, errno: 'ENOENT' });
  }

  /** A view holding `access`'s locks on `file` until it is closed. */
  private async lockedView(file: MemoryFile, view: BlockFile, access: LockAccess, path: string, options: OpenFileOptions): Promise<BlockFile> {
    if (!(options.lock ?? this.locking)) return view;
    const opener = Symbol(path);
    lockImage(file.locks.of(opener), access, path);
    return { ...view, close: async () => { file.locks.releaseAll(opener); await view.close(); } };
  }
}

/** Lock bytes to the set of openers holding a (shared) lock on each. */
export class LockTable {
  private holders = new Map<number, Set<symbol>>();

  of(opener: symbol): ByteLocks {
    return {
      lockShared: (byte) => { this.holdersOf(byte).add(opener); },
      unlock: (byte) => { this.holders.get(byte)?.delete(opener); },
      isLockedByOthers: (byte) => [...this.holders.get(byte) ?? []].some((h) => h !== opener),
    };
  }

  releaseAll(opener: symbol): void {
    for (const set of this.holders.values()) set.delete(opener);
  }

  private holdersOf(byte: number): Set<symbol> {
    let set = this.holders.get(byte);
    if (!set) { set = new Set(); this.holders.set(byte, set); }
    return set;
  }
}

function normalise(path: string): string {
  const absolute = path.startsWith('/');
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop(); else parts.push(part);
  }
  return (absolute ? '/' : '') + parts.join('/');
}
