// Geometry: the formulas of qed-format.md, checked against independent arithmetic.
import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Geometry, capacityOf } from '../../../src/format/geometry.js';

const clusterSizes = fc.integer({ min: 12, max: 26 }).map((s) => 2 ** s);
const tableSizes = fc.constantFrom(1, 2, 4, 8, 16);

test('entries = table_size * cluster_size / 8 and capacity = entries^2 * cluster_size', () => {
  fc.assert(fc.property(clusterSizes, tableSizes, fc.integer({ min: 1, max: 4 }), (cs, ts, hs) => {
    const g = new Geometry(cs, ts, hs);
    const entries = (BigInt(ts) * BigInt(cs)) / 8n;
    assert.equal(BigInt(g.entriesPerTable), entries);
    assert.equal(BigInt(g.tableBytes), BigInt(ts) * BigInt(cs));
    assert.equal(BigInt(g.bytesPerL2), entries * BigInt(cs));
    assert.equal(BigInt(g.capacity), entries * entries * BigInt(cs), 'capacity is a power of two, exact as a double');
    assert.equal(g.headerBytes, hs * cs);
  }));
});

test('the capacities NOTES.md quotes: 64 KiB/4 -> 64 TiB, 4 KiB/1 -> 1 GiB, 64 MiB/16 -> 2^80', () => {
  assert.equal(capacityOf(65536, 4), 70368744177664);
  assert.equal(capacityOf(4096, 1), 1073741824);
  assert.equal(new Geometry(64 * 2 ** 20, 16, 1).capacity, 2 ** 80);
});

test('a guest offset splits into l1 index | l2 index | byte in cluster, and recombines', () => {
  fc.assert(fc.property(clusterSizes, tableSizes, fc.double({ min: 0, max: 1, noNaN: true }), (cs, ts, where) => {
    const g = new Geometry(cs, ts, 1);
    const limit = Math.min(g.capacity, Number.MAX_SAFE_INTEGER);
    const offset = Math.min(limit - 1, Math.floor(where * limit));
    const l1 = g.l1Index(offset);
    const l2 = g.l2Index(offset);
    const inCluster = offset % cs;
    assert.ok(l1 >= 0 && l1 < g.entriesPerTable);
    assert.ok(l2 >= 0 && l2 < g.entriesPerTable);
    assert.equal(l1 * g.bytesPerL2 + l2 * cs + inCluster, offset);
    assert.equal(g.clusterStart(offset), offset - inCluster);
    assert.equal(g.l2CoverageEnd(offset), (l1 + 1) * g.bytesPerL2);
    assert.ok(g.l2CoverageEnd(offset) > offset);
  }));
});

test('clusterCount rounds up', () => {
  const g = new Geometry(4096, 1, 1);
  assert.deepEqual([0, 1, 4095, 4096, 4097, 8192].map((n) => g.clusterCount(n)), [0, 1, 1, 1, 2, 2]);
});

test('capacityOf clamps an oversized table_size to 16 instead of computing a bogus capacity', () => {
  assert.equal(capacityOf(4096, 32), capacityOf(4096, 16));
});
