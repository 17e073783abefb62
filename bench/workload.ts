// Shared by the benchmark driver and the in-library worker: the workload description and the
// seeded offsets, so that our engine and QEMU see exactly the same requests.

export type WorkloadKind = 'seq-write' | 'seq-read' | 'rand-write' | 'rand-read' | 'none';

export interface Job {
  kind: WorkloadKind;
  format: 'qed' | 'raw';
  path: string;
  /** Request size in bytes. */
  req: number;
  /** Number of requests. */
  count: number;
  /** Requests in flight: a sliding window for sequential, batches (issue, then drain) for random. */
  depth: number;
  seed: number;
  /** Byte every written buffer is filled with (and every read is expected to return). */
  pattern: number;
}

/** mulberry32: small, fast, and identical in every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` offsets, aligned to `block`, uniformly spread over [0, size). */
export function randomOffsets(seed: number, count: number, size: number, block: number): number[] {
  const next = prng(seed);
  const slots = Math.floor(size / block);
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) out[i] = Math.floor(next() * slots) * block;
  return out;
}
