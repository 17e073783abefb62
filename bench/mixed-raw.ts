// The mixed source the convert and stream benches copy: a fully allocated raw file (no holes,
// so no tool can skip by asking the file system) of 1 MiB pieces that are random data, zeros,
// or mostly zeros with a few 4 KiB data blocks, about a third each.
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { prng } from './workload.js';

export function writeMixedRaw(path: string, size: number, seed: number): void {
  const next = prng(seed);
  const fd = openSync(path, 'w');
  const piece = Buffer.alloc(1 << 20);
  for (let off = 0; off < size; off += piece.length) {
    const kind = next();
    piece.fill(0);
    if (kind < 0.34) {
      for (let i = 0; i < piece.length; i += 4) piece.writeUInt32LE(Math.floor(next() * 2 ** 32), i);
    } else if (kind < 0.67) {
      for (let k = 0; k < 4; k++) piece.fill(1 + k, Math.floor(next() * 255) * 4096, Math.floor(next() * 255) * 4096 + 4096);
    }
    writeSync(fd, piece, 0, piece.length, off);
  }
  ftruncateSync(fd, size);
  closeSync(fd);
}
