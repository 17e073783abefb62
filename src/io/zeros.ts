// Writing zeros over a range in bounded pieces, so zeroing a large range costs no large buffer.
import type { BlockFile } from './block-file.js';

const ZERO_PIECE = new Uint8Array(1024 * 1024);

export async function writeZerosAt(file: BlockFile, offset: number, length: number): Promise<void> {
  for (let done = 0; done < length; done += ZERO_PIECE.length) {
    await file.write(ZERO_PIECE.subarray(0, Math.min(ZERO_PIECE.length, length - done)), offset + done);
  }
}
