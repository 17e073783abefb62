// The crash states of one flush epoch: which of its pending disk operations land, which are
// lost and which are torn, tried in a fixed order from a seeded generator.
import { hex } from '../../src/base/errors.js';
import { sectorsOf, type DiskOp, type LandedOp, type WriteOp } from './crash-file.js';
import type { Random } from './crash-random.js';

export interface CrashStateOptions {
  /** Every subset of an epoch with at most this many pending operations is tried. */
  exhaustiveUpTo?: number;
  /** Random subsets tried in a larger epoch. */
  randomSubsets?: number;
}

/**
 * The subsets of an epoch's pending operations to try: every prefix (a crash part-way), every
 * single omission (one reordered write lost), the last write of each prefix torn three ways,
 * then all subsets of a small epoch or a random sample (some torn) of a large one.
 */
export function* crashStates(pending: readonly DiskOp[], rng: Random, options: CrashStateOptions = {}): Generator<LandedOp[]> {
  const n = pending.length;
  const seen = new Set<string>();
  const fresh = (key: string): boolean => !seen.has(key) && !!seen.add(key);
  const whole = (indexes: number[]): LandedOp[] => indexes.map((i) => ({ op: pending[i]! }));
  const upTo = (j: number): number[] => Array.from({ length: j }, (_, i) => i);

  for (let j = 0; j <= n; j++) if (fresh(upTo(j).join())) yield whole(upTo(j));
  for (let skip = 0; skip < n; skip++) {
    const kept = upTo(n).filter((i) => i !== skip);
    if (fresh(kept.join())) yield whole(kept);
  }
  for (let j = 1; j <= n; j++) {
    const last = pending[j - 1]!;
    if (last.kind !== 'write') continue;
    const { first, count } = sectorsOf(last);
    if (count < 2) continue;
    const tears: Array<[string, (s: number) => boolean]> = [
      ['front', (s) => s - first < count / 2],
      ['back', (s) => s - first >= count / 2],
      ['random', randomTear(rng, first, count)],
    ];
    for (const [tear, keeps] of tears) yield [...whole(upTo(j - 1)), { op: last, keeps, tear }];
  }
  const exhaustiveUpTo = options.exhaustiveUpTo ?? 10;
  if (n <= exhaustiveUpTo) {
    for (let mask = 0; mask < 1 << n; mask++) {
      const kept = upTo(n).filter((i) => mask & (1 << i));
      if (fresh(kept.join())) yield whole(kept);
    }
    return;
  }
  for (let k = 0; k < (options.randomSubsets ?? 400); k++) {
    const kept = upTo(n).filter(() => rng.chance(0.5));
    const landed = whole(kept);
    const writes = landed.filter((l) => l.op.kind === 'write' && sectorsOf(l.op).count > 1);
    if (writes.length > 0 && rng.chance(0.3)) {
      const torn = writes[rng.int(writes.length)]!;
      const { first, count } = sectorsOf(torn.op as WriteOp);
      torn.keeps = randomTear(rng, first, count);
      torn.tear = 'random';
    } else if (!fresh(kept.join())) continue;
    yield landed;
  }
}

/** A random proper, non-empty choice of sectors (a torn write kept all or none is no tear). */
function randomTear(rng: Random, first: number, count: number): (s: number) => boolean {
  const keep = new Uint8Array(count);
  for (let i = 0; i < count; i++) keep[i] = rng.chance(0.5) ? 1 : 0;
  keep[rng.int(count)] = 1;
  keep[(rng.int(count - 1) + 1 + keep.indexOf(1)) % count] = 0;
  return (s) => keep[s - first] === 1;
}

export function describeLanded(pending: readonly DiskOp[], landed: readonly LandedOp[]): string {
  const ops = pending.map((op) => {
    const l = landed.find((x) => x.op === op);
    const what = op.kind === 'write' ? `write ${hex(op.offset)}+${hex(op.bytes.length)}` : `truncate ${hex(op.size)}`;
    return `${l ? (l.keeps ? `TORN(${l.tear})` : 'LANDED') : 'lost'} ${what}`;
  });
  return `crash with [${ops.join('; ')}]`;
}
