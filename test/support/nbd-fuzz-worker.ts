// The NBD fuzz campaign, on a worker thread (see fuzz-run.ts) with the server in the same
// thread: an uncaught exception anywhere in the server ends the worker and fails the run with
// the case it was serving. Each case is one connection: its generated client stream is sent,
// the client half-closes, and everything the server sends until it closes is judged by
// nbd-stream-judge.ts. Meanwhile well-behaved clients connect over and over, and one stays
// connected throughout, each reading known data from the read-only export: the server must
// keep serving them while it is being fuzzed.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import fc from 'fast-check';
import { MemoryStore } from '../../src/io/memory-file.js';
import { createImage } from '../../src/ops/create.js';
import { openDevice } from '../../src/ops/open.js';
import { startNbdServer } from '../../src/nbd/server/server.js';
import { NbdRawClient } from './nbd-raw-client.js';
import { encodeStream, nbdFuzzCaseArb, type NbdFuzzCase } from './nbd-fuzz-streams.js';
import { judgeExchange } from './nbd-stream-judge.js';
import type { WorkerMessage } from './fuzz-run.js';

export interface NbdFuzzJob { seed: number; cases: number; regressions: NbdFuzzCase[] }

const MiB = 1024 * 1024;
const RO_PATTERN = 0x5a;
/**
 * Heap and buffers the worker may hold after a stream (the server's pools included): one
 * fuzzed connection at a time may have 128 MiB of requests and 64 MiB of replies in flight,
 * plus buffers of closed connections not yet collected.
 */
const MEMORY_BOUND = 1024 * MiB;

function post(m: WorkerMessage): void { parentPort!.postMessage(m); }

async function exportsFor(): Promise<{ disk: Awaited<ReturnType<typeof openDevice>>; ro: Awaited<ReturnType<typeof openDevice>> }> {
  const store = new MemoryStore();
  store.add('/nbd/base.raw').writeSync(new Uint8Array(MiB).fill(0x33), 0);
  store.files.get('/nbd/base.raw')!.truncateSync(8 * MiB);
  await createImage('/nbd/disk.qed', { store, size: 64 * MiB, clusterSize: 4096, tableSize: 2, backingFile: 'base.raw', backingFormat: 'raw' });
  await createImage('/nbd/ro.qed', { store, size: 16 * MiB, clusterSize: 65536, tableSize: 4 });
  const writer = await openDevice('/nbd/ro.qed', { store });
  await writer.write(new Uint8Array(MiB).fill(RO_PATTERN), 0);
  await writer.close();
  return {
    disk: await openDevice('/nbd/disk.qed', { store, idleFlushMs: 1e9 }),
    ro: await openDevice('/nbd/ro.qed', { store, readOnly: true }),
  };
}

/** One connection: send the stream, half-close, collect the server's bytes until it closes. */
function exchange(path: string, stream: Buffer, limitMs: number): Promise<{ server: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ server: Buffer.concat(chunks), closed });
    };
    const timer = setTimeout(() => finish(false), limitMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => undefined); // EPIPE after the server dropped us: what it sent still counts
    socket.on('close', () => finish(true));
    socket.on('connect', () => { socket.write(stream); socket.end(); });
  });
}

/** A well-behaved client reads known data from the read-only export; returns a problem or null. */
async function goodRead(path: string, client?: NbdRawClient): Promise<string | null> {
  const c = client ?? await NbdRawClient.unix(path, { timeoutMs: 10_000 });
  try {
    if (!client) await c.negotiate({ name: 'ro', contexts: ['base:allocation'] });
    const r = await c.read(MiB - 4096, 8192);
    if (r.error !== 0 || r.violations.length > 0) return `a well-behaved client's read failed: error ${r.error} ${r.violations.join('; ')}`;
    if (!r.data!.subarray(0, 4096).every((b) => b === RO_PATTERN) || !r.data!.subarray(4096).every((b) => b === 0)) return 'a well-behaved client read wrong data';
    return null;
  } finally {
    if (!client) c.destroy();
  }
}

async function run(job: NbdFuzzJob): Promise<void> {
  const dir = mkdtempSync('/tmp/qed-nbd-fuzz-');
  const path = join(dir, 'nbd.sock');
  const { disk, ro } = await exportsFor();
  const exports = new Map([['', disk.size], ['disk', disk.size], ['ro', ro.size]]);
  let serverLogLines = 0;
  const server = await startNbdServer({
    exports: [{ name: 'disk', description: 'fuzzed', device: disk }, { name: 'ro', description: '', device: ro }],
    listen: { kind: 'unix', path }, maxClients: 64, handshakeTimeoutMs: 5000,
    log: () => { serverLogLines++; },
  });
  const stats = { regressions: 0, cases: 0, reachedTransmission: 0, requestsAnswered: 0, goodReads: 0, bytesSent: 0, peakMemoryMiB: 0 };
  let failure: string | null = null;
  let stopGood = false;
  const longLived = await NbdRawClient.unix(path, { timeoutMs: 10_000 });
  await longLived.negotiate({ name: 'ro', contexts: ['base:allocation'] });
  // Well-behaved clients, one after another, all through the campaign.
  const goodLoop = (async () => {
    while (!stopGood && failure === null) {
      const problem = await goodRead(path).catch((err: unknown) => `a well-behaved client failed: ${err instanceof Error ? err.message : String(err)}`)
        ?? await goodRead(path, longLived).catch((err: unknown) => `the long-lived client failed: ${err instanceof Error ? err.message : String(err)}`);
      if (problem) { failure ??= problem; break; }
      stats.goodReads += 2;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  const judge = async (c: NbdFuzzCase): Promise<string[]> => {
    post({ kind: 'case', description: JSON.stringify(c) });
    const stream = encodeStream(c, disk.size);
    stats.bytesSent += stream.length;
    const { server: sent, closed } = await exchange(path, stream, 15_000);
    if (!closed) return ['the server did not close the connection after the client\'s end of stream'];
    const verdict = judgeExchange(stream, sent, exports);
    const { arrayBuffers, heapUsed } = process.memoryUsage();
    stats.peakMemoryMiB = Math.max(stats.peakMemoryMiB, Math.round((arrayBuffers + heapUsed) / MiB));
    if (arrayBuffers + heapUsed > MEMORY_BOUND) return [`${Math.round((arrayBuffers + heapUsed) / MiB)} MiB in use after this stream`];
    if (verdict.reachedTransmission) stats.reachedTransmission++;
    stats.requestsAnswered += verdict.requestsAnswered;
    return verdict.violations;
  };
  try {
    for (const c of job.regressions) {
      const problems = await judge(c);
      stats.regressions++;
      if (problems.length > 0) { failure = `regression case ${JSON.stringify(c)}: ${problems.join('; ')}`; break; }
    }
    if (failure === null) {
      const details = await fc.check(fc.asyncProperty(nbdFuzzCaseArb, async (c) => {
        stats.cases++;
        const problems = await judge(c);
        if (problems.length > 0) throw new Error(problems.join('; '));
      }), { seed: job.seed, numRuns: job.cases, endOnFailure: false });
      if (details.failed) {
        failure ??= `seed ${job.seed}, path ${details.counterexamplePath}: ${JSON.stringify(details.counterexample?.[0])}\n  ${details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)}`;
      }
    }
    stopGood = true;
    await goodLoop;
    const last = await goodRead(path);
    if (last) failure ??= `after the campaign: ${last}`;
    longLived.destroy();
    // Every fuzzed connection is gone: none leaked in the server.
    for (let i = 0; i < 100 && server.clientCount > 0; i++) await new Promise((r) => setTimeout(r, 50));
    if (server.clientCount > 0) failure ??= `${server.clientCount} connection(s) still open after every client left`;
    const { heapUsed, arrayBuffers } = process.memoryUsage();
    post({ kind: 'log', line: `nbd fuzz worker: heap ${Math.round(heapUsed / MiB)} MiB, array buffers ${Math.round(arrayBuffers / MiB)} MiB at the end; ${serverLogLines} server log lines` });
  } finally {
    await server.stop();
    await disk.close();
    await ro.close();
    rmSync(dir, { recursive: true, force: true });
  }
  post({ kind: 'done', failure, stats });
}

if (!isMainThread && (workerData as Partial<NbdFuzzJob> | null)?.regressions) {
  run(workerData as NbdFuzzJob).catch((err: unknown) => {
    post({ kind: 'done', failure: `campaign crashed: ${err instanceof Error ? err.stack : String(err)}`, stats: {} });
  });
}
