// The bounded table walker (src/check/table-walker.ts): a table may be 16 clusters of 64 MiB,
// 1 GiB; neither the checker nor leak reclaim may read one, or a cluster, in one buffer.
import test from 'node:test';
import assert from 'node:assert/strict';
import { MemoryFile } from '../../../src/io/memory-file.js';
import { readHeader } from '../../../src/engine/open.js';
import { checkImage } from '../../../src/check/check.js';
import { PIECE_BYTES, walkTable } from '../../../src/check/table-walker.js';
import { ImageBuilder, entryBytes } from '../../support/image-builder.js';
import { CountingFile } from '../../support/counting-file.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

test('walking a 1 GiB table reads it in pieces of at most 1 MiB, visits each entry once at its own offset, and writes back only the pieces changed', async () => {
  const file = new MemoryFile('table');
  const tableOffset = 64 * MiB;
  const entries = GiB / 8;
  const marked = [0, 1, PIECE_BYTES / 8 - 1, PIECE_BYTES / 8, entries / 2 + 3, entries - 1];
  for (const index of marked) file.writeSync(entryBytes(0x10000 * (index + 1)), tableOffset + index * 8);
  file.truncateSync(tableOffset + GiB);
  const counting = new CountingFile(file);

  const seen: Array<[number, number]> = [];
  let visited = 0;
  await walkTable(counting, tableOffset, GiB, (piece) => {
    visited += piece.entryCount;
    for (let i = 0; i < piece.entryCount; i++) {
      const value = piece.entry(i);
      if (value === 0) continue;
      seen.push([(piece.entryHost(i) - tableOffset) / 8, value]);
      if (piece.entryHost(i) === tableOffset + 8) piece.setEntry(i, 0x20000);
    }
  });
  assert.equal(visited, entries);
  assert.deepEqual(seen, marked.map((index) => [index, 0x10000 * (index + 1)]));
  assert.equal(counting.largestRead, PIECE_BYTES);
  assert.equal(counting.bytesWritten, PIECE_BYTES, 'only the piece holding the changed entry');
  const back = new Uint8Array(8);
  file.readSync(back, tableOffset + 8);
  assert.deepEqual(back, entryBytes(0x20000));
});

test('check and leak reclaim of an image of 64 MiB clusters and 1 GiB tables never read or write more than 1 MiB at once', async () => {
  const cs = 64 * MiB;
  const b = new ImageBuilder({ clusterSize: cs, tableSize: 16, imageSize: 4 * GiB });
  const table = b.appendTable();
  b.setL1(0, table);
  const first = b.append(1);
  b.append(1); // the leak
  const second = b.append(1);
  b.put(first, Uint8Array.of(1, 2, 3)).put(second, Uint8Array.of(4, 5, 6));
  b.setL2(table, 0, first).setL2(table, 1, second);
  const file = b.toFile();

  const counting = new CountingFile(file.view(false));
  const result = await checkImage(counting, (await readHeader(file.view(true))).header, { fix: 'leaks' });
  assert.deepEqual({ leaks: result.leaks, leaksFixed: result.leaksFixed, corruptions: result.corruptions }, { leaks: 0, leaksFixed: 1, corruptions: 0 });
  assert.equal(file.sizeSync, second, 'the second data cluster moved into the leaked one');
  const moved = new Uint8Array(3);
  file.readSync(moved, second - cs);
  assert.deepEqual(moved, Uint8Array.of(4, 5, 6));
  const entry = new Uint8Array(8);
  file.readSync(entry, table + 8);
  assert.deepEqual(entry, entryBytes(second - cs));
  assert.ok(counting.largestRead <= PIECE_BYTES, `largest read ${counting.largestRead}`);
  assert.ok(counting.largestWrite <= PIECE_BYTES, `largest write ${counting.largestWrite}`);
});
