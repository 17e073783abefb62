// Byte-order helpers, checked against DataView (the platform's own little-endian codec)
// rather than against each other.
import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { entryAt, narrowU64, putEntryAt, putU32le, putU64le, u32le, u64le } from '../../../src/base/bytes.js';
import { FormatError } from '../../../src/base/errors.js';

test('u32le reads what DataView writes little-endian, at any offset, never negative', () => {
  fc.assert(fc.property(fc.nat(0xffffffff), fc.nat(12), (value, at) => {
    const buf = new Uint8Array(16);
    new DataView(buf.buffer).setUint32(at, value, true);
    assert.equal(u32le(buf, at), value);
  }));
  assert.equal(u32le(new Uint8Array([0xff, 0xff, 0xff, 0xff]), 0), 0xffffffff);
});

test('putU32le writes what DataView reads little-endian, touching only its 4 bytes', () => {
  fc.assert(fc.property(fc.nat(0xffffffff), fc.nat(12), (value, at) => {
    const buf = new Uint8Array(16).fill(0xcc);
    putU32le(buf, at, value);
    assert.equal(new DataView(buf.buffer).getUint32(at, true), value);
    buf.fill(0xcc, at, at + 4);
    assert.deepEqual(buf, new Uint8Array(16).fill(0xcc));
  }));
});

test('u64le and putU64le agree with DataView for every u64', () => {
  fc.assert(fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.nat(8), (value, at) => {
    const buf = new Uint8Array(16);
    new DataView(buf.buffer).setBigUint64(at, value, true);
    assert.equal(u64le(buf, at), value);
    const out = new Uint8Array(16);
    putU64le(out, at, value);
    assert.equal(new DataView(out.buffer).getBigUint64(at, true), value);
  }));
});

test('narrowU64 is exact up to 2^53-1 and a FormatError naming the field beyond', () => {
  assert.equal(narrowU64(0n, 'x'), 0);
  assert.equal(narrowU64(2n ** 53n - 1n, 'x'), Number.MAX_SAFE_INTEGER);
  for (const value of [2n ** 53n, 2n ** 64n - 1n]) {
    assert.throws(() => narrowU64(value, 'image_size', 'a.qed'), (err: unknown) => {
      assert.ok(err instanceof FormatError);
      assert.equal(err.field, 'image_size');
      assert.equal(err.path, 'a.qed');
      assert.match(err.message, new RegExp(`image_size 0x${value.toString(16)} is too large`));
      return true;
    });
  }
});

test('entryAt reads table entries exactly below 2^53 and as Infinity from 2^53 up', () => {
  fc.assert(fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.nat(3), (value, index) => {
    const buf = new Uint8Array(32);
    const view = new DataView(buf.buffer);
    view.setBigUint64(index * 8, value, true);
    assert.equal(entryAt(view, index), value < 2n ** 53n ? Number(value) : Infinity);
  }));
});

test('putEntryAt writes any safe offset as the u64 DataView reads back', () => {
  fc.assert(fc.property(fc.maxSafeNat(), fc.nat(3), (value, index) => {
    const buf = new Uint8Array(32);
    const view = new DataView(buf.buffer);
    putEntryAt(view, index, value);
    assert.equal(view.getBigUint64(index * 8, true), BigInt(value));
    assert.equal(entryAt(view, index), value);
  }));
});
