// Reading tables and copying clusters in bounded pieces, for the checker and for leak
// reclaim. A table is table_size clusters (up to 16 × 64 MiB = 1 GiB), so neither may ever
// hold a whole table, or a whole 64 MiB cluster, in one buffer: every read and write here is
// at most PIECE_BYTES long, whatever the header claims.
import { entryAt, putEntryAt } from '../base/bytes.js';
import type { BlockFile } from '../io/block-file.js';

/** The largest buffer a walk or a copy uses (and so the largest single read or write). */
export const PIECE_BYTES = 1024 * 1024;

/** A run of consecutive entries of one table, as read from the file. */
export class TablePiece {
  private readonly view: DataView;
  private dirty = false;

  constructor(readonly bytes: Uint8Array, readonly hostOffset: number) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get entryCount(): number { return this.bytes.length / 8; }
  entry(index: number): number { return entryAt(this.view, index); }
  /** Where entry `index` lies in the file. */
  entryHost(index: number): number { return this.hostOffset + index * 8; }
  /** Change an entry; the walk writes the piece back after the visit. */
  setEntry(index: number, value: number): void {
    putEntryAt(this.view, index, value);
    this.dirty = true;
  }
  get changed(): boolean { return this.dirty; }
}

/**
 * Visit the table at `tableOffset` piece by piece, in order. A piece the visitor changed is
 * written back in place before the next one is read; the visitor must not keep the piece,
 * whose buffer is reused.
 */
export async function walkTable(file: BlockFile, tableOffset: number, tableBytes: number,
  visit: (piece: TablePiece) => void | Promise<void>, pieceBytes = PIECE_BYTES): Promise<void> {
  const buffer = new Uint8Array(Math.min(pieceBytes, tableBytes));
  for (let done = 0; done < tableBytes; done += buffer.length) {
    const bytes = buffer.subarray(0, Math.min(buffer.length, tableBytes - done));
    await file.read(bytes, tableOffset + done);
    const piece = new TablePiece(bytes, tableOffset + done);
    await visit(piece);
    if (piece.changed) await file.write(bytes, tableOffset + done);
  }
}

/**
 * Copy `length` bytes from `from` to `to` in pieces; `patch` may change each piece before it
 * is written (a moved table pointing at the new places of moved data). The ranges must not
 * overlap.
 */
export async function copyInPieces(file: BlockFile, from: number, to: number, length: number,
  patch?: (piece: TablePiece) => void): Promise<void> {
  const buffer = new Uint8Array(Math.min(PIECE_BYTES, length));
  for (let done = 0; done < length; done += buffer.length) {
    const bytes = buffer.subarray(0, Math.min(buffer.length, length - done));
    await file.read(bytes, from + done);
    patch?.(new TablePiece(bytes, from + done));
    await file.write(bytes, to + done);
  }
}
