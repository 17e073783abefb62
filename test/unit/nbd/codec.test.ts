// The NBD codec is pure and incremental: every message decodes the same however the bytes are
// split, every declared length is checked against the bytes present and the caps, and the
// encoders produce the layouts of the protocol document (checked here byte by byte).
import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IncomingBuffer } from '../../../src/nbd/protocol/incoming.js';
import { decodeOptionHeader, encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeOptionReply, parseExportRequest, parseMetaContextRequest } from '../../../src/nbd/protocol/handshake.js';
import { decodeRequest, encodeBlockStatus, encodeErrorChunk, encodeOffsetHole, encodeSimpleReply } from '../../../src/nbd/protocol/transmission.js';

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** Hand-built bytes, written from the protocol document rather than from our encoders. */
function be(...fields: Array<[bits: 16 | 32 | 64, value: number | bigint] | string>): Uint8Array {
  const parts: Buffer[] = fields.map((f) => {
    if (typeof f === 'string') return Buffer.from(f, 'utf8');
    const [bits, value] = f;
    const b = Buffer.alloc(bits / 8);
    if (bits === 16) b.writeUInt16BE(Number(value));
    else if (bits === 32) b.writeUInt32BE(Number(value));
    else b.writeBigUInt64BE(BigInt(value));
    return b;
  });
  return new Uint8Array(Buffer.concat(parts));
}

test('IncomingBuffer yields the same messages for every split of the input', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 30 }), (bytes, sizes) => {
    for (let split = 0; split <= bytes.length; split++) {
      const buffer = new IncomingBuffer();
      buffer.push(bytes.subarray(0, split));
      buffer.push(bytes.subarray(split));
      const out: number[] = [];
      let i = 0;
      for (;;) {
        const n = sizes[i++ % sizes.length]!;
        const got = buffer.take(n);
        if (!got) break;
        out.push(...got);
      }
      out.push(...(buffer.take(buffer.available) ?? []));
      assert.deepEqual(out, [...bytes]);
    }
  }), { numRuns: 50 });
});

test('IncomingBuffer.take waits for the whole length; skip drops without keeping; clear forgets', () => {
  const buffer = new IncomingBuffer();
  buffer.push(new Uint8Array([1, 2, 3]));
  assert.equal(buffer.take(4), null);
  buffer.push(new Uint8Array([4, 5]));
  assert.deepEqual([...buffer.take(4)!], [1, 2, 3, 4]);
  assert.equal(buffer.skip(10), 1);
  assert.equal(buffer.available, 0);
  buffer.push(new Uint8Array([9]));
  buffer.clear();
  assert.equal(buffer.take(1), null);
});

test('the greeting, option replies and info replies have the layouts of proto.md', () => {
  assert.equal(hex(encodeGreeting()), hex(be([64, 0x4e42444d41474943n], [64, 0x49484156454f5054n], [16, 3])));
  assert.equal(hex(encodeOptionReply(7, 1)), hex(be([64, 0x3e889045565a9n], [32, 7], [32, 1], [32, 0])));
  assert.equal(hex(encodeInfoExport(7, 1 << 20, 0x1ed)), hex(be([64, 0x3e889045565a9n], [32, 7], [32, 3], [32, 12], [16, 0], [64, 1 << 20], [16, 0x1ed])));
  assert.equal(hex(encodeInfoBlockSize(6, 1, 65536, 1 << 25)), hex(be([64, 0x3e889045565a9n], [32, 6], [32, 3], [32, 14], [16, 3], [32, 1], [32, 65536], [32, 1 << 25])));
});

test('option headers: magic checked, option and length read', () => {
  assert.deepEqual(decodeOptionHeader(be([64, 0x49484156454f5054n], [32, 7], [32, 0xffffffff])), { ok: true, option: 7, length: 0xffffffff });
  assert.equal(decodeOptionHeader(be([64, 1n], [32, 7], [32, 0])).ok, false);
});

test('GO/INFO payloads: every truncation and every overlong length is refused, never read past', () => {
  const good = be([32, 3], 'abc', [16, 2], [16, 1], [16, 3]);
  assert.deepEqual(parseExportRequest(good), { ok: true, value: { name: 'abc', infoRequests: [1, 3] } });
  for (let cut = 0; cut < good.length; cut++) assert.equal(parseExportRequest(good.subarray(0, cut)).ok, false, `cut at ${cut}`);
  assert.equal(parseExportRequest(be([32, 0xffffffff], [16, 0])).ok, false);
  assert.equal(parseExportRequest(be([32, 5000], 'x'.repeat(5000), [16, 0])).ok, false, 'names over 4096 bytes');
  assert.equal(parseExportRequest(be([32, 1], '\0', [16, 0])).ok, false, 'NUL in a name');
  assert.equal(parseExportRequest(new Uint8Array([0, 0, 0, 1, 0xff, 0, 0])).ok, false, 'invalid UTF-8');
  assert.equal(parseExportRequest(be([32, 0], [16, 1], [16, 1], [16, 2])).ok, false, 'trailing bytes');
});

test('meta context payloads: counted queries, each bounded; too many queries refused', () => {
  const good = be([32, 0], [32, 2], [32, 15], 'base:allocation', [32, 21], 'qemu:allocation-depth');
  assert.deepEqual(parseMetaContextRequest(good, 16), { ok: true, value: { exportName: '', queries: ['base:allocation', 'qemu:allocation-depth'] } });
  for (let cut = 0; cut < good.length; cut++) assert.equal(parseMetaContextRequest(good.subarray(0, cut), 16).ok, false, `cut at ${cut}`);
  assert.equal(parseMetaContextRequest(be([32, 0], [32, 0xffffffff]), 16).ok, false);
  assert.equal(parseMetaContextRequest(be([32, 0], [32, 1], [32, 0xfffffff0]), 16).ok, false);
});

test('requests decode with u64 offsets intact; replies encode as proto.md lays them out', () => {
  const request = be([32, 0x25609513], [16, 1], [16, 1], [64, 0xdeadbeefcafef00dn], [64, 0xffffffffffffff00n], [32, 4096]);
  assert.deepEqual(decodeRequest(request), { ok: true, request: { flags: 1, type: 1, handle: 0xdeadbeefcafef00dn, offset: 0xffffffffffffff00n, length: 4096 } });
  assert.equal(decodeRequest(be([32, 0x25609514], [16, 0], [16, 0], [64, 0n], [64, 0n], [32, 0])).ok, false);
  assert.equal(hex(encodeSimpleReply(5n, 22)), hex(be([32, 0x67446698], [32, 22], [64, 5n])));
  assert.equal(hex(encodeOffsetHole(5n, true, 4096, 512)), hex(be([32, 0x668e33ef], [16, 1], [16, 2], [64, 5n], [32, 12], [64, 4096], [32, 512])));
  assert.equal(hex(encodeBlockStatus(5n, false, 2, [{ length: 512, status: 3 }])), hex(be([32, 0x668e33ef], [16, 0], [16, 5], [64, 5n], [32, 12], [32, 2], [32, 512], [32, 3])));
  assert.equal(hex(encodeErrorChunk(5n, 5, 'io')), hex(be([32, 0x668e33ef], [16, 1], [16, 0x8001], [64, 5n], [32, 8], [32, 5], [16, 2], 'io')));
});

test('an error message never carries more than a bounded part of what the client sent', () => {
  const chunk = encodeErrorChunk(1n, 22, 'x'.repeat(100_000));
  assert.ok(chunk.length < 300);
});
