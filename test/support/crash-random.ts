// Seeded randomness for the crash tests: one small generator every run can repeat from its
// seed, the data patterns guests write, and the random completion delays of a recording file.

/** mulberry32: small, fast, and the same sequence everywhere for a given seed. */
export class Random {
  private state: number;
  constructor(readonly seed: number) { this.state = (seed >>> 0) || 0x9e3779b9; }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  chance(p: number): boolean { return this.next() < p; }
}

/** Bytes no other pattern (and no zero sector) will match by accident. */
export function patternBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  const words = new Uint32Array(bytes.buffer, 0, length >>> 2);
  let x = (seed ^ 0x2545f491) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
  for (let i = words.length * 4; i < length; i++) bytes[i] = (i * 131 + seed) & 0xff | 1;
  return bytes;
}

/** A delay of a few microtask hops between an operation's issue and its completion. */
export function randomSettle(rng: Random): () => Promise<void> {
  return async () => {
    for (let hops = rng.chance(0.5) ? 0 : 1 + rng.int(4); hops > 0; hops--) await null;
  };
}
