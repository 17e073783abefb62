// The server's memory does not grow with the number of requests a connection has sent: each
// wait for the next request used to leave a reaction on the server's shared stop promise,
// keeping the request header and the socket chunk it came in alive until the server stopped
// (about 64 KiB per write of 64 KiB; found by the NBD fuzzer as memory growing over a run).
// Measured after forced garbage collections, at the same point of two phases of 2000 writes.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MemoryStore } from '../../src/io/memory-file.js';
import { createImage } from '../../src/ops/create.js';
import { openDevice } from '../../src/ops/open.js';
import { startNbdServer } from '../../src/nbd/server/server.js';
import { NbdRawClient } from '../support/nbd-raw-client.js';

const MiB = 1024 * 1024;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function buffersInUse(): number {
  gc();
  gc();
  return process.memoryUsage().arrayBuffers;
}

test('2000 more writes on a connection leave the memory in use where it was', async (t) => {
  const dir = mkdtempSync('/tmp/qed-nbd-memory-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  await createImage('/m.qed', { store, size: 16 * MiB, clusterSize: 65536 });
  const device = await openDevice('/m.qed', { store, idleFlushMs: 1e9 });
  const path = join(dir, 'nbd.sock');
  const server = await startNbdServer({ exports: [{ name: 'm', description: '', device }], listen: { kind: 'unix', path } });
  const client = await NbdRawClient.unix(path);
  t.after(async () => { client.destroy(); await server.stop(); await device.close(); });
  await client.negotiate({ name: 'm' });
  const data = Buffer.alloc(65536, 0x5c);
  const writes = async (n: number) => {
    for (let i = 0; i < n; i++) assert.equal((await client.write((i % 16) * 65536, data)).error, 0);
  };
  await writes(2000);
  const before = buffersInUse();
  await writes(2000);
  const grown = buffersInUse() - before;
  assert.ok(grown < 16 * MiB, `buffers in use grew by ${(grown / MiB).toFixed(1)} MiB over 2000 writes`);
});
