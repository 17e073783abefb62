// A client that sends its requests and then ends its side of the stream (shutdown for
// writing) still gets every reply: the server answers what it received before closing. Found
// by the NBD fuzzer: node ends a server socket as soon as the client's end arrives unless it
// is allowed half-open, so the reply to a slow request (here zeroing 32 MiB over a backing
// file) was dropped and the connection closed without it.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { MemoryStore } from '../../src/io/memory-file.js';
import { createImage } from '../../src/ops/create.js';
import { openDevice } from '../../src/ops/open.js';
import { startNbdServer } from '../../src/nbd/server/server.js';
import { u32be, u64be, optionBytes, infoRequestData, OPT, CMD, NBD_SIMPLE_REPLY_MAGIC } from '../support/nbd-raw-client.js';

const MiB = 1024 * 1024;

test('requests sent before the client ends its side of the stream are all answered before the server closes', async (t) => {
  const dir = mkdtempSync('/tmp/qed-half-close-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  store.add('/h/base.raw').truncateSync(64 * MiB);
  await createImage('/h/disk.qed', { store, size: 64 * MiB, clusterSize: 4096, tableSize: 2, backingFile: 'base.raw', backingFormat: 'raw' });
  const device = await openDevice('/h/disk.qed', { store, idleFlushMs: 1e9 });
  const path = join(dir, 'nbd.sock');
  const server = await startNbdServer({ exports: [{ name: 'disk', description: '', device }], listen: { kind: 'unix', path } });
  t.after(async () => { await server.stop(); await device.close(); });

  const request = (type: number, handle: number, offset: number, length: number) =>
    Buffer.concat([u32be(0x25609513), Buffer.alloc(2), Buffer.from([0, type]), u64be(handle), u64be(offset), u32be(length)]);
  const stream = Buffer.concat([
    u32be(1), // fixed newstyle, zeroes after the export-name reply (unused: GO)
    optionBytes(OPT.GO, infoRequestData('disk')),
    request(CMD.WRITE_ZEROES, 1, 0, 32 * MiB), // thousands of zero clusters over a backing file: not instant
    request(CMD.FLUSH, 2, 0, 0),
  ]);
  const received = await new Promise<Buffer>((resolve, reject) => {
    const socket = connect(path);
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.on('connect', () => { socket.write(stream); socket.end(); });
  });
  const handles: bigint[] = [];
  for (let at = 0; at + 16 <= received.length; at++) {
    if (received.readUInt32BE(at) === NBD_SIMPLE_REPLY_MAGIC && received.readUInt32BE(at + 4) === 0) handles.push(received.readBigUInt64BE(at + 8));
  }
  assert.deepEqual(handles.sort(), [1n, 2n], 'both requests were answered with success');
  const zeros = new Uint8Array(4096);
  await device.read(zeros, 32 * MiB - 4096);
  assert.ok(zeros.every((b) => b === 0));
});
