// Repair gives a doubly referenced cluster a private copy per reference, but never more copies
// than the image holds distinct data clusters (at least 16): one hostile table whose entries
// all name one cluster would otherwise make `check -r all` write a cluster per entry.
import test from 'node:test';
import assert from 'node:assert/strict';
import { checkImage } from '../../../src/check/check.js';
import { readHeader } from '../../../src/engine/open.js';
import { MemoryStore } from '../../../src/io/memory-file.js';
import { ImageBuilder } from '../../support/image-builder.js';

const CS = 0x10000;

test('8192 references to one cluster: check -r all makes at most 16 copies, clears the rest, and the image checks clean', async () => {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, imageSize: 32768 * CS });
  const data = b.mapData(0, 0x11);
  const table = b.tableOf(0);
  for (let i = 1; i < 8192; i++) b.setL2(table, i, data);
  const store = new MemoryStore();
  store.add('/h.qed', b.toFile('/h.qed'));
  const file = await store.open('/h.qed', 'read-write');
  const before = await file.size();
  const { header } = await readHeader(file);
  const repaired = await checkImage(file, header, { fix: 'all' });
  assert.ok(repaired.corruptionsFixed >= 8191, `fixed ${repaired.corruptionsFixed}`);
  const grown = (await file.size()) - before;
  assert.ok(grown <= 16 * CS, `the file grew by ${grown / CS} clusters`);
  const again = await checkImage(file, (await readHeader(file)).header, { fix: 'none' });
  assert.equal(again.corruptions, 0, again.problems.join('; '));
  await file.close();
});

test('a few double references among many distinct clusters all get their copy', async () => {
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, imageSize: 1024 * CS });
  const clusters: number[] = [];
  for (let i = 0; i < 40; i++) clusters.push(b.mapData(i, i + 1));
  const table = b.tableOf(0);
  for (let i = 0; i < 30; i++) b.setL2(table, 100 + i, clusters[i]!);
  const store = new MemoryStore();
  store.add('/d.qed', b.toFile('/d.qed'));
  const file = await store.open('/d.qed', 'read-write');
  const { header } = await readHeader(file);
  const repaired = await checkImage(file, header, { fix: 'all' });
  assert.equal(repaired.problems.filter((p) => p.includes('cleared')).length, 0, repaired.problems.join('; '));
  await file.close();
});
