// The one storage seam. The engine reads and writes every byte through a BlockFile: positional
// I/O with no cursor, an explicit flush that makes completed writes durable, and a size.
// Node files, memory, the crash-recording file of the tests and, later, remote objects all
// implement it; nothing above src/io touches node:fs.

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
  size(): Promise<number>;
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
}

export type OpenMode = 'read-only' | 'read-write';

/**
 * Where images and their backing files come from. The engine resolves backing names through
 * it, so a confined or remote store can decide what a name means.
 */
export interface FileStore {
  open(path: string, mode: OpenMode): Promise<BlockFile>;
  /** Create (or truncate) a file for a new image. */
  create(path: string): Promise<BlockFile>;
  /** The name a backing file has when written relative to the image at `imagePath`. */
  resolveBacking(imagePath: string, backingName: string): string;
  /** A stable identity for loop detection (the real path for local files). */
  identity(path: string): Promise<string>;
}
