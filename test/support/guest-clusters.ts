// What the guest sees of a QED file, read straight from its tables with DataView (not through
// the engine or src/format): guest cluster index → a digest of the cluster's bytes, for the
// allocated clusters (zero clusters as "zero"). Reclaim and repair tests compare it before
// and after: moving clusters must not change it.
import { createHash } from 'node:crypto';
import type { BlockFile } from '../../src/io/block-file.js';

export async function guestClusters(file: BlockFile): Promise<Map<number, string>> {
  const fields = new Uint8Array(64);
  await file.read(fields, 0);
  const header = new DataView(fields.buffer);
  const clusterSize = header.getUint32(4, true);
  const tableSize = header.getUint32(8, true);
  const l1Offset = Number(header.getBigUint64(40, true));
  const entries = (clusterSize * tableSize) / 8;
  const seen = new Map<number, string>();
  const l1 = await readEntries(file, l1Offset, entries);
  const cluster = new Uint8Array(clusterSize);
  for (const [l1Index, tableOffset] of l1) {
    for (const [l2Index, dataOffset] of await readEntries(file, tableOffset, entries)) {
      const guest = l1Index * entries + l2Index;
      if (dataOffset === 1) { seen.set(guest, 'zero'); continue; }
      await file.read(cluster, dataOffset);
      seen.set(guest, createHash('sha1').update(cluster).digest('hex'));
    }
  }
  return seen;
}

/** The nonzero entries of a table, as [index, value]; read in 1 MiB pieces. */
async function readEntries(file: BlockFile, offset: number, count: number): Promise<Array<[number, number]>> {
  const found: Array<[number, number]> = [];
  const piece = new Uint8Array(Math.min(count * 8, 1 << 20));
  for (let first = 0; first < count; first += piece.length / 8) {
    await file.read(piece, offset + first * 8);
    const view = new DataView(piece.buffer);
    for (let i = 0; i < piece.length / 8 && first + i < count; i++) {
      const value = Number(view.getBigUint64(i * 8, true));
      if (value !== 0) found.push([first + i, value]);
    }
  }
  return found;
}
