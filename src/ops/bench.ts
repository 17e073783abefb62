// `bench`: qemu-img bench's sequential request generator with a queue depth, through our
// engine, so storage stacks can be compared with the same parameters.
import { UsageError } from '../base/errors.js';
import type { FileStore } from '../io/block-file.js';
import type { ImageFormat } from '../format/probe.js';
import { openDevice } from './open.js';
import { settleAll } from '../engine/device.js';

export interface BenchOptions {
  format?: ImageFormat;
  write?: boolean;
  count?: number;
  depth?: number;
  bufferSize?: number;
  offset?: number;
  step?: number;
  pattern?: number;
  /** Flush after every N requests (0: never), as --flush-interval. */
  flushInterval?: number;
  store?: FileStore;
}

export interface BenchResult { seconds: number; requests: number; bytes: number }

export async function benchImage(path: string, options: BenchOptions = {}): Promise<BenchResult> {
  const count = options.count ?? 75000;
  const depth = options.depth ?? 64;
  const bufferSize = options.bufferSize ?? 4096;
  const step = options.step ?? bufferSize;
  let offset = options.offset ?? 0;
  for (const [name, v] of Object.entries({ count, depth, bufferSize, step, offset })) {
    if (!Number.isSafeInteger(v) || v < 0 || (name !== 'step' && name !== 'offset' && v === 0)) throw new UsageError(`invalid ${name} ${v}`);
  }
  if (options.flushInterval && options.flushInterval < depth) {
    throw new UsageError("flush interval can't be smaller than depth");
  }
  const device = await openDevice(path, { format: options.format, readOnly: !options.write, store: options.store });
  try {
    if (bufferSize > device.size) throw new UsageError(`buffer size ${bufferSize} is larger than the image`, { path });
    const nextOffset = (): number => {
      if (offset + bufferSize > device.size) offset = 0;
      const at = offset;
      offset += step;
      return at;
    };
    let issued = 0;
    let sinceFlush = 0;
    const started = performance.now();
    const worker = async (): Promise<void> => {
      const buf = new Uint8Array(bufferSize).fill(options.pattern ?? 0);
      while (issued < count) {
        issued++;
        const at = nextOffset();
        if (options.write) await device.write(buf, at); else await device.read(buf, at);
        if (options.flushInterval && ++sinceFlush >= options.flushInterval) { sinceFlush = 0; await device.flush(); }
      }
    };
    await settleAll(Array.from({ length: Math.min(depth, count) }, worker));
    if (options.write) await device.flush();
    return { seconds: (performance.now() - started) / 1000, requests: count, bytes: count * bufferSize };
  } finally {
    await device.close();
  }
}
