// BlockFile over a local file (or block device) with positional I/O and fdatasync. Opens
// take QEMU-compatible advisory locks (image-lock.ts) unless told not to; a block device's
// size comes from the kernel, since fstat reports 0 for it (block-device.ts).
import { constants, read as readCallback, readFileSync, readSync, write as writeCallback, writeSync } from 'node:fs';
import { open, realpath, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import type { BlockFile, FileStore, OpenFileOptions, OpenMode } from './block-file.js';
import { blockDeviceSize } from './block-device.js';
import { type ByteLocks, type LockAccess, lockImage } from './image-lock.js';
import { ReadBatcher } from './read-batcher.js';
import { loadNative, type NativeIo, type NativeLoad } from './native.js';
import { IoError, LockedError, QedError, UnsupportedError, UsageError, wrapIoError } from '../base/errors.js';

/** Options of local files; `native` is for tests. */
export interface NodeOpenOptions extends OpenFileOptions {
  /** @internal The native addon to lock and size with (tests pass one that failed to load). */
  native?: NativeLoad;
}

let lockingByDefault = true;

/** The CLI's --no-lock: opens that do not say `lock` themselves take no locks. */
export function setLockingByDefault(on: boolean): void { lockingByDefault = on; }

/**
 * Reads up to this size are first tried without waiting (preadv2 RWF_NOWAIT): what the page
 * cache holds is copied at once on the main thread, skipping the thread-pool round trip that
 * bounds reads at one request in flight. A miss costs one syscall and goes the usual way, so
 * the event loop is never blocked on the device. On memory-backed files (isMemoryBacked)
 * reads and writes up to this size are copied on the main thread outright; the bound keeps
 * each such block of the event loop to one copy of at most 128 KiB (about 15 µs here).
 * Larger reads there are copied on the main thread too, but gathered for one turn of the
 * loop and bounded per turn (read-batcher.ts).
 */
const NOWAIT_MAX_BYTES = 128 * 1024;

/**
 * File systems whose files live in memory (tmpfs, ramfs: statfs f_type). Without swap a read
 * or write there is a memory copy that never waits on a device, but such file systems refuse
 * RWF_NOWAIT, so without this every request would take the thread-pool round trip.
 */
const MEMORY_FILE_SYSTEMS = new Set([0x01021994 /* TMPFS_MAGIC */, 0x858458f6 /* RAMFS_MAGIC */]);

let swapConfigured: boolean | undefined;

/** True when any swap area is active: then a tmpfs page may have to be read back from a device. */
function hasSwap(): boolean {
  if (swapConfigured === undefined) {
    try { swapConfigured = readFileSync('/proc/swaps', 'utf8').trim().split('\n').length > 1; } catch { swapConfigured = true; }
  }
  return swapConfigured;
}

/** True when requests up to NOWAIT_MAX_BYTES may run on the main thread (see MEMORY_FILE_SYSTEMS). */
async function isMemoryBacked(path: string, isRegularFile: boolean): Promise<boolean> {
  if (!isRegularFile || hasSwap()) return false;
  try { return MEMORY_FILE_SYSTEMS.has((await statfs(path)).type); } catch { return false; }
}

/** Runs reported by one findData call at most (a file with millions of holes is walked in parts). */
const MAX_HOLE_RUNS = 65536;

/** Images are regular files or block devices; folders, FIFOs, sockets and character devices are refused. */
function refuseUnlessFileOrDevice(info: { isDirectory(): boolean; isFile(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean }, path: string, characterDevices = false): void {
  if (info.isDirectory()) throw new IoError(`'${path}' is a directory`, { path, errno: 'EISDIR' });
  if (characterDevices && info.isCharacterDevice()) return;
  if (!info.isFile() && !info.isBlockDevice()) throw new IoError(`'${path}' is not a regular file or block device`, { path });
}

export class NodeFile implements BlockFile {
  private constructor(
    readonly path: string,
    readonly readOnly: boolean,
    private handle: FileHandle,
    /** The device number when the file is a block device; null for a regular file. */
    private readonly blockDevice: bigint | null,
    private readonly native: NativeLoad,
    /** Small requests are copied on the main thread: the file lives in memory (isMemoryBacked). */
    private readonly inMemory: boolean,
    /** A character device (opened only when asked for): fdatasync may not apply to it. */
    private readonly characterDevice = false,
  ) {
    this.batcher = new ReadBatcher(() => this.handle.fd, (buf, offset, done) => this.readRest(buf, offset, done), inMemory);
  }

  static async open(path: string, mode: OpenMode, options: NodeOpenOptions = {}): Promise<NodeFile> {
    if (options.forceShare && mode !== 'read-only') {
      throw new UsageError('force-share can only be used with read-only images', { path });
    }
    const native = options.native ?? loadNative();
    try {
      // Refuse FIFOs, sockets and character devices before opening: opening a FIFO blocks
      // until a writer appears. O_NONBLOCK covers one swapped in after the stat; it changes
      // nothing for regular files and block devices. The fstat below is the real check.
      refuseUnlessFileOrDevice(await stat(path), path, options.characterDevices);
      const flags = (mode === 'read-only' ? constants.O_RDONLY : constants.O_RDWR) | constants.O_NONBLOCK;
      const handle = await open(path, flags);
      try {
        const info = await handle.stat({ bigint: true });
        refuseUnlessFileOrDevice(info, path, options.characterDevices);
        const access: LockAccess = mode === 'read-write' ? 'read-write' : options.forceShare ? 'read-only-force-share' : 'read-only';
        lockOpenFile(handle, path, access, options, native);
        return new NodeFile(path, mode === 'read-only', handle, info.isBlockDevice() ? info.rdev : null, native, await isMemoryBacked(path, info.isFile()), info.isCharacterDevice());
      } catch (err) {
        await handle.close().catch(() => undefined);
        throw err;
      }
    } catch (err) {
      if (err instanceof QedError) throw err;
      throw wrapIoError('open', path, undefined, err);
    }
  }

  /**
   * Open without truncating, lock, and only then empty the file: truncating on open would
   * destroy an image someone else has open (QEMU's raw_co_create takes the same steps).
   */
  static async create(path: string, options: NodeOpenOptions = {}): Promise<NodeFile> {
    const native = options.native ?? loadNative();
    try {
      const handle = await open(path, constants.O_RDWR | constants.O_CREAT | (options.exclusive ? constants.O_EXCL : 0));
      try {
        const info = await handle.stat({ bigint: true });
        lockOpenFile(handle, path, 'create', options, native);
        if (info.isFile()) await handle.truncate(0);
        return new NodeFile(path, false, handle, info.isBlockDevice() ? info.rdev : null, native, await isMemoryBacked(path, info.isFile()));
      } catch (err) {
        await handle.close().catch(() => undefined);
        // An exclusive create made the file itself: a refused lock must not leave it behind.
        if (options.exclusive) await unlink(path).catch(() => undefined);
        throw err;
      }
    } catch (err) {
      if (err instanceof QedError) throw err;
      throw wrapIoError('create', path, undefined, err);
    }
  }

  read(buf: Uint8Array, offset: number): Promise<number> {
    const done = this.readWithoutWaiting(buf, offset);
    if (done === buf.length) return Promise.resolve(done);
    if (done === 0) return this.batcher.read(buf, offset);
    return this.readRest(buf, offset, done);
  }

  /**
   * Reads over NOWAIT_MAX_BYTES that lie back to back in the file share one preadv
   * (read-batcher.ts). On a memory-backed file they are copied on the main thread, a bounded
   * amount per turn of the loop: there a thread-pool round trip costs more than the copy
   * (nbdcopy from tmpfs on 2 CPUs: wall 0.539 -> 0.484 s a GiB, server CPU 0.67 -> 0.60 s).
   */
  private readonly batcher: ReadBatcher;

  private async readRest(buf: Uint8Array, offset: number, done: number): Promise<number> {
    try {
      while (done < buf.length) {
        const bytesRead = await readAt(this.handle.fd, buf, done, buf.length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (err) {
      throw wrapIoError('read', this.path, offset, err);
    }
    if (done < buf.length) buf.fill(0, done);
    return done;
  }

  write(buf: Uint8Array, offset: number): Promise<void> {
    this.knownRun = null;
    // Not while a thread-pool write is under way: buffered writes to one file take its inode
    // lock, so the main thread would wait out a multi-megabyte copy (80 µs a call, measured).
    if (this.inMemory && buf.length <= NOWAIT_MAX_BYTES && this.pooledWrites === 0) {
      try {
        const written = writeSync(this.handle.fd, buf, 0, buf.length, offset);
        if (written === buf.length) return Promise.resolve();
        return this.writeRest(buf, offset, written);
      } catch (err) {
        return Promise.reject(wrapIoError('write', this.path, offset, err));
      }
    }
    return this.writeRest(buf, offset, 0);
  }

  private async writeRest(buf: Uint8Array, offset: number, done: number): Promise<void> {
    this.pooledWrites++;
    try {
      while (done < buf.length) {
        const bytesWritten = await writeAt(this.handle.fd, buf, done, buf.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw wrapIoError('write', this.path, offset, err);
    } finally {
      this.pooledWrites--;
    }
  }

  /** Writes of ours now on the thread pool (see write). */
  private pooledWrites = 0;

  async flush(): Promise<void> {
    try {
      await this.handle.datasync();
    } catch (err) {
      // fdatasync(2) says EINVAL for special files that have nothing to synchronize (/dev/null).
      if (this.characterDevice && (err as { code?: unknown }).code === 'EINVAL') return;
      throw wrapIoError('flush', this.path, undefined, err);
    }
  }

  async size(): Promise<number> {
    try {
      if (this.blockDevice !== null) return await blockDeviceSize(this.handle.fd, this.blockDevice, this.native);
      return (await this.handle.stat()).size;
    } catch (err) {
      throw wrapIoError('stat', this.path, undefined, err);
    }
  }

  async truncate(size: number): Promise<void> {
    this.knownRun = null;
    try { await this.handle.truncate(size); } catch (err) { throw wrapIoError('truncate', this.path, size, err); }
  }

  /** False once the file system said it cannot read without waiting (tmpfs): then never asked again. */
  private nowait = true;

  /**
   * Bytes read at once on the main thread: all of a small request on a memory-backed file,
   * or what the page cache holds without waiting; 0 when none, or when not possible here.
   * A failure is left to the waiting path, which reports it.
   */
  private readWithoutWaiting(buf: Uint8Array, offset: number): number {
    if (this.inMemory && buf.length <= NOWAIT_MAX_BYTES) {
      try { return readSync(this.handle.fd, buf, 0, buf.length, offset); } catch { return 0; }
    }
    const readNowait = this.native.ok ? this.native.io.readNowait : undefined;
    if (!this.nowait || !readNowait || buf.length > NOWAIT_MAX_BYTES || buf.length === 0) return 0;
    let got: number;
    try { got = readNowait(this.handle.fd, buf, offset); } catch { this.nowait = false; return 0; }
    if (got === -2) { this.nowait = false; return 0; }
    return Math.max(0, got);
  }

  /**
   * Data and holes by lseek(SEEK_DATA/SEEK_HOLE) through the native addon, as qemu-img's raw
   * driver finds them; null without the addon or where the file system cannot tell (then all
   * is data). At most `maxRuns` runs, ending where they end; without it at most
   * MAX_HOLE_RUNS, and the rest is reported as data.
   */
  async findData(offset: number, length: number, maxRuns?: number): Promise<Array<{ offset: number; length: number; data: boolean }> | null> {
    const seek = this.native.ok ? this.native.io.seekData : undefined;
    if (!seek || this.blockDevice !== null) return null;
    const fd = this.handle.fd;
    const end = offset + length;
    const runs: Array<{ offset: number; length: number; data: boolean }> = [];
    try {
      for (let pos = offset; pos < end;) {
        if (maxRuns !== undefined && runs.length >= maxRuns) break;
        if (runs.length >= MAX_HOLE_RUNS) { runs.push({ offset: pos, length: end - pos, data: true }); break; }
        const known = this.knownRun !== null && this.knownRun.start <= pos && pos < this.knownRun.end ? this.knownRun : null;
        if (known && !known.data) {
          const holeEnd = Math.min(end, known.end);
          runs.push({ offset: pos, length: holeEnd - pos, data: false });
          pos = holeEnd;
          continue;
        }
        const data = known ? pos : seek(fd, pos, false);
        if (data < 0 || data >= end) {
          runs.push({ offset: pos, length: end - pos, data: false });
          if (data >= end) this.knownRun = { start: pos, end: data, data: false };
          break;
        }
        if (data > pos) {
          runs.push({ offset: pos, length: data - pos, data: false });
          this.knownRun = { start: pos, end: data, data: false };
          if (maxRuns !== undefined && runs.length >= maxRuns) break;
        }
        // SEEK_HOLE scans up to the next hole, which in a file without holes is its end: the
        // whole run is remembered so the next step of the walk needs no second scan.
        const nextHole = known ? known.end : seek(fd, data, true);
        if (!known) this.knownRun = { start: data, end: nextHole, data: true };
        const hole = Math.min(end, nextHole);
        runs.push({ offset: data, length: hole - data, data: true });
        pos = hole;
      }
    } catch {
      return null; // ENOSYS, or a file system without SEEK_DATA: no holes known
    }
    return runs;
  }

  /**
   * The last run SEEK_DATA/SEEK_HOLE found, beyond the range then asked about (cleared by any
   * write or truncate of ours): walks ask range by range, and each SEEK_HOLE scans the
   * page cache up to the next hole, so without it a 4 GiB file without holes was scanned
   * to its end once per 256 MiB step.
   */
  private knownRun: { start: number; end: number; data: boolean } | null = null;

  async close(): Promise<void> {
    try { await this.handle.close(); } catch (err) { throw wrapIoError('close', this.path, undefined, err); }
  }
}

/** Lock an open file for `access`, or explain why it cannot be locked. */
function lockOpenFile(handle: FileHandle, path: string, access: LockAccess, options: NodeOpenOptions, native: NativeLoad): void {
  if (!(options.lock ?? lockingByDefault)) return;
  if (!native.ok) {
    // Reading takes nothing from anyone, so a reader goes on unlocked; a writer without its
    // lock could corrupt an image in use elsewhere, so it is refused.
    if (access === 'read-only' || access === 'read-only-force-share') return;
    throw new UnsupportedError(`image locking needs the native addon qed-image was built with; pass lock: false / --no-lock to open without locking (${native.reason})`, { path });
  }
  try {
    lockImage(fcntlLocks(handle.fd, native.io, path), access, path);
  } catch (err) {
    if (err instanceof QedError) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    throw new IoError(`could not lock '${path}': ${reason}; pass lock: false / --no-lock to open without locking`, { path, cause: err, errno: (err as { code?: string }).code });
  }
}

function fcntlLocks(fd: number, io: NativeIo, path: string): ByteLocks {
  return {
    lockShared: (byte) => {
      // Only an exclusive lock blocks a shared one, and QEMU's scheme takes none: some other
      // program is locking this file.
      if (!io.lockByte(fd, byte, 'shared')) throw new LockedError(`Failed to lock byte ${byte}: Is another process using the image [${path}]?`, { path });
    },
    unlock: (byte) => { io.lockByte(fd, byte, 'unlock'); },
    isLockedByOthers: (byte) => io.isByteLocked(fd, byte),
  };
}

/** Local files. Backing names resolve against the overlay's directory, as QEMU does. */
export class NodeFileStore implements FileStore {
  /** `defaults` apply where an open leaves an option unset. */
  constructor(private readonly defaults: NodeOpenOptions = {}) {}
  /** Open a local file (see FileStore.open). */
  open(path: string, mode: OpenMode, options: OpenFileOptions = {}): Promise<BlockFile> {
    return NodeFile.open(path, mode, this.withDefaults(options));
  }
  create(path: string, options: OpenFileOptions = {}): Promise<BlockFile> {
    return NodeFile.create(path, this.withDefaults(options));
  }
  private withDefaults(options: OpenFileOptions): NodeOpenOptions {
    return {
      lock: options.lock ?? this.defaults.lock,
      forceShare: options.forceShare ?? this.defaults.forceShare,
      exclusive: options.exclusive,
      characterDevices: options.characterDevices,
      native: this.defaults.native,
    };
  }
  /** QEMU's path_combine: the image's directory as given, a slash, the name; not normalised. */
  resolveBacking(imagePath: string, backingName: string): string {
    if (isAbsolute(backingName)) return backingName;
    const slash = imagePath.lastIndexOf('/');
    return slash < 0 ? backingName : imagePath.slice(0, slash + 1) + backingName;
  }
  async identity(path: string): Promise<string> {
    try { return await realpath(path); } catch { return resolve(path); }
  }
  allocatedBytes(path: string): Promise<number> { return allocatedBytes(path); }
  async remove(path: string): Promise<void> {
    try { await unlink(path); } catch (err) { throw wrapIoError('remove', path, undefined, err); }
  }
}

/** Allocated bytes of a local file (qemu-img's "disk size" / actual-size). */
export async function allocatedBytes(path: string): Promise<number> {
  const info = await stat(path);
  return info.blocks * 512;
}

// Positional reads and writes through the callback API on the handle's descriptor: measured
// here at several times the requests per second of FileHandle.read/write, whose promise
// plumbing costs the main thread more than the copy itself (see BENCHMARKS.md). The
// FileHandle still owns the descriptor and closes it.
function readAt(fd: number, buf: Uint8Array, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    readCallback(fd, buf, at, length, position, (err, bytesRead) => (err ? reject(err) : resolve(bytesRead)));
  });
}

function writeAt(fd: number, buf: Uint8Array, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    writeCallback(fd, buf, at, length, position, (err, bytesWritten) => (err ? reject(err) : resolve(bytesWritten)));
  });
}
