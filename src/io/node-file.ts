// BlockFile over a local file (or block device) with positional I/O and fdatasync.
import { constants } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import type { BlockFile, FileStore, OpenMode } from './block-file.js';
import { IoError, wrapIoError } from '../base/errors.js';

export class NodeFile implements BlockFile {
  private constructor(readonly path: string, readonly readOnly: boolean, private handle: FileHandle) {}

  static async open(path: string, mode: OpenMode): Promise<NodeFile> {
    try {
      // Refuse FIFOs, sockets and character devices before opening: opening a FIFO blocks
      // until a writer appears. O_NONBLOCK covers one swapped in after the stat; it changes
      // nothing for regular files and block devices. The fstat below is the real check.
      const before = await stat(path);
      if (before.isDirectory()) throw new IoError(`'${path}' is a directory`, { path, errno: 'EISDIR' });
      if (!before.isFile() && !before.isBlockDevice()) throw new IoError(`'${path}' is not a regular file or block device`, { path });
      const flags = (mode === 'read-only' ? constants.O_RDONLY : constants.O_RDWR) | constants.O_NONBLOCK;
      const handle = await open(path, flags);
      const info = await handle.stat();
      if (info.isDirectory()) {
        await handle.close();
        throw new IoError(`'${path}' is a directory`, { path, errno: 'EISDIR' });
      }
      if (!info.isFile() && !info.isBlockDevice()) {
        await handle.close();
        throw new IoError(`'${path}' is not a regular file or block device`, { path });
      }
      return new NodeFile(path, mode === 'read-only', handle);
    } catch (err) {
      if (err instanceof IoError) throw err;
      throw wrapIoError('open', path, undefined, err);
    }
  }

  static async create(path: string): Promise<NodeFile> {
    try {
      return new NodeFile(path, false, await open(path, 'w+'));
    } catch (err) {
      throw wrapIoError('create', path, undefined, err);
    }
  }

  async read(buf: Uint8Array, offset: number): Promise<number> {
    let done = 0;
    try {
      while (done < buf.length) {
        const { bytesRead } = await this.handle.read(buf, done, buf.length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (err) {
      throw wrapIoError('read', this.path, offset, err);
    }
    if (done < buf.length) buf.fill(0, done);
    return done;
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    let done = 0;
    try {
      while (done < buf.length) {
        const { bytesWritten } = await this.handle.write(buf, done, buf.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw wrapIoError('write', this.path, offset, err);
    }
  }

  async flush(): Promise<void> {
    try { await this.handle.datasync(); } catch (err) { throw wrapIoError('flush', this.path, undefined, err); }
  }

  async size(): Promise<number> {
    try { return (await this.handle.stat()).size; } catch (err) { throw wrapIoError('stat', this.path, undefined, err); }
  }

  async truncate(size: number): Promise<void> {
    try { await this.handle.truncate(size); } catch (err) { throw wrapIoError('truncate', this.path, size, err); }
  }

  async close(): Promise<void> {
    try { await this.handle.close(); } catch (err) { throw wrapIoError('close', this.path, undefined, err); }
  }
}

/** Local files. Backing names resolve against the overlay's directory, as QEMU does. */
export class NodeFileStore implements FileStore {
  open(path: string, mode: OpenMode): Promise<BlockFile> { return NodeFile.open(path, mode); }
  create(path: string): Promise<BlockFile> { return NodeFile.create(path); }
  /** QEMU's path_combine: the image's directory as given, a slash, the name; not normalised. */
  resolveBacking(imagePath: string, backingName: string): string {
    if (isAbsolute(backingName)) return backingName;
    const slash = imagePath.lastIndexOf('/');
    return slash < 0 ? backingName : imagePath.slice(0, slash + 1) + backingName;
  }
  async identity(path: string): Promise<string> {
    try { return await realpath(path); } catch { return resolve(path); }
  }
}

/** Allocated bytes of a local file (qemu-img's "disk size" / actual-size). */
export async function allocatedBytes(path: string): Promise<number> {
  const info = await stat(path);
  return info.blocks * 512;
}
