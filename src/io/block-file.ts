// The one storage seam. The engine reads and writes every byte through a BlockFile: positional
// I/O with no cursor, an explicit flush that makes completed writes durable, and a size.
// Node files, memory, the crash-recording file of the tests and, later, remote objects all
// implement it; nothing above src/io touches node:fs.

/**
 * One file as the engine uses it: positioned reads and writes, size, flush. Implement it (with
 * a FileStore) to keep images somewhere else: an object store, a browser file, memory.
 */
export interface BlockFile {
  /** Name used in error messages (a path, or a label for memory files). */
  readonly path: string;
  readonly readOnly: boolean;
  /**
   * Fill `buf` from `offset`. Bytes past the end of the file read as zeros; the return value
   * is how many bytes were really in the file.
   */
  read(buf: Uint8Array, offset: number): Promise<number>;
  /** Write all of `buf` at `offset`, growing the file if needed. Not durable until flush. */
  write(buf: Uint8Array, offset: number): Promise<void>;
  /** Make every completed write and truncate durable (fdatasync). */
  flush(): Promise<void>;
  /** Current length in bytes. */
  size(): Promise<number>;
  /**
   * Where the file holds data and where it has holes in [offset, offset+length), in order, if
   * the file can tell cheaply (SEEK_DATA/SEEK_HOLE); null when it cannot, and then everything
   * must be taken as data. With `maxRuns`, at most that many runs, which then may end before
   * offset+length (the caller asks again from where they end). Optional: stores without holes
   * need not implement it.
   */
  findData?(offset: number, length: number, maxRuns?: number): Promise<Array<{ offset: number; length: number; data: boolean }> | null>;
  /** Set the length; new bytes read as zeros. */
  truncate(size: number): Promise<void>;
  /** Release the file (and its locks). */
  close(): Promise<void>;
}

/** How a file is opened. */
export type OpenMode = 'read-only' | 'read-write';

/**
 * How an open coordinates with other openers of the same file (src/io/image-lock.ts has the
 * scheme). By default a read-write open refuses to share writing, so there is one writer per
 * image, and a read-only open refuses to let anyone write under it.
 */
export interface OpenFileOptions {
  /** false: take no locks and respect none (QEMU's locking=off). Default: lock. */
  lock?: boolean;
  /** Read-only opens only: let others write meanwhile (qemu-img -U / force-share). */
  forceShare?: boolean;
  /** create() only: refuse (errno EEXIST) if the file exists, instead of replacing it. */
  exclusive?: boolean;
  /**
   * Also open character devices (QEMU's host_device driver, asked for by name). By default
   * they are refused: reading one as an image is rarely meant, and some never end.
   */
  characterDevices?: boolean;
}

/**
 * Where images and their backing files come from. The engine resolves backing names through
 * it, so a confined or remote store can decide what a name means.
 */
export interface FileStore {
  /** Open an existing file; refused (LockedError) while another opener's access conflicts. */
  open(path: string, mode: OpenMode, options?: OpenFileOptions): Promise<BlockFile>;
  /** Create (or truncate) a file for a new image; refused while another opener uses it. */
  create(path: string, options?: OpenFileOptions): Promise<BlockFile>;
  /** The name a backing file has when written relative to the image at `imagePath`. */
  resolveBacking(imagePath: string, backingName: string): string;
  /** A stable identity for loop detection (the real path for local files). */
  identity(path: string): Promise<string>;
  /** Bytes the file really occupies (qemu-img's "disk size"), where the store can tell. */
  allocatedBytes?(path: string): Promise<number>;
  /** Delete a file (a half-written image after a failed import); stores without it keep the file. */
  remove?(path: string): Promise<void>;
}
