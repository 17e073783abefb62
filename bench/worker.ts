// One benchmark run through our library, in its own process so that the driver times it
// exactly as it times qemu-img and qemu-io: spawn to exit, minus an empty run.
//
//   node dist/bench/worker.js '<Job as JSON>'
//
// Opens the image (read-only for reads), runs the requests, flushes (writes), closes, and
// prints one JSON line: {"ok":true,"internalMs":...}. The content of the last read buffers is
// checked against the pattern after the timed part, so a read that silently did nothing fails.
import '../src/io/node-default.js';
import { openDevice } from '../src/ops/open.js';
import { randomOffsets, type Job } from './workload.js';

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? '') as Job;
  const started = process.hrtime.bigint();
  const writing = job.kind === 'seq-write' || job.kind === 'rand-write' || job.kind === 'none';
  const dev = await openDevice(job.path, { format: job.format, readOnly: !writing });
  const lanes = Math.max(1, job.depth);
  const buffers = Array.from({ length: lanes }, () => new Uint8Array(job.req).fill(writing ? job.pattern : 0));
  try {
    switch (job.kind) {
      case 'none':
        break;
      case 'seq-write':
      case 'seq-read': {
        // Sliding window: `depth` lanes each take the next request as soon as theirs completes
        // (what qemu-img bench -d does).
        let next = 0;
        const op = job.kind === 'seq-write' ? (b: Uint8Array, o: number) => dev.write(b, o) : (b: Uint8Array, o: number) => dev.read(b, o);
        const lane = async (buf: Uint8Array): Promise<void> => {
          while (next < job.count) {
            const i = next++;
            await op(buf, i * job.req);
          }
        };
        await Promise.all(buffers.map(lane));
        break;
      }
      case 'rand-write':
      case 'rand-read': {
        const offsets = randomOffsets(job.seed, job.count, dev.size, job.req);
        const write = job.kind === 'rand-write';
        if (lanes === 1) {
          const buf = buffers[0]!;
          for (const off of offsets) await (write ? dev.write(buf, off) : dev.read(buf, off));
        } else {
          // Batches: issue `depth` requests, wait for all (qemu-io: N x aio_write, aio_flush).
          const batch: Promise<void>[] = new Array(lanes);
          for (let i = 0; i < offsets.length; i += lanes) {
            const n = Math.min(lanes, offsets.length - i);
            for (let k = 0; k < n; k++) batch[k] = write ? dev.write(buffers[k]!, offsets[i + k]!) : dev.read(buffers[k]!, offsets[i + k]!);
            await Promise.all(batch.slice(0, n));
          }
        }
        break;
      }
    }
    if (writing) await dev.flush();
  } finally {
    await dev.close();
  }
  const internalMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (!writing && job.count > 0) {
    for (const b of buffers) {
      for (let i = 0; i < b.length; i += 509) {
        if (b[i] !== job.pattern) throw new Error(`read returned ${b[i]} at buffer byte ${i}, expected ${job.pattern}`);
      }
    }
  }
  process.stdout.write(JSON.stringify({ ok: true, internalMs }) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`worker failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
