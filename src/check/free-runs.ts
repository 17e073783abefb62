// Leaked space below the last used cluster, kept as runs (first cluster, length) in file
// order: memory grows with the number of runs (at most one more than the used units), never
// with the file's size. A 1 TiB file holding one cluster at its end is one run.
//
// Finding the lowest run long enough for a unit is a descent through a max-tree over the run
// lengths, so a round that places thousands of units stays O(units × log runs).

export class FreeRuns {
  private readonly starts: Float64Array;
  private readonly lengths: Float64Array;
  /** tree[1] is the root; leaves from `leaves`; each node the longest run below it. */
  private readonly tree: Float64Array;
  private readonly leaves: number;

  /** Runs given by first cluster and length, in ascending order of first, not overlapping. */
  constructor(starts: Float64Array, lengths: Float64Array) {
    this.starts = starts.slice();
    this.lengths = lengths.slice();
    let leaves = 1;
    while (leaves < lengths.length) leaves *= 2;
    this.leaves = leaves;
    this.tree = new Float64Array(2 * leaves);
    this.tree.set(this.lengths, leaves);
    for (let node = leaves - 1; node >= 1; node--) this.tree[node] = Math.max(this.tree[2 * node]!, this.tree[2 * node + 1]!);
  }

  get runCount(): number { return this.lengths.length; }

  /** The first cluster of the lowest free cluster, or Infinity when none is left. */
  lowest(): number {
    const run = this.lowestRunOf(1);
    return run < 0 ? Infinity : this.starts[run]!;
  }

  /**
   * Take `size` clusters from the front of the lowest run that holds them, if they end at or
   * below `limit`; returns their first cluster, or -1 (no run that low is long enough).
   */
  take(size: number, limit: number): number {
    const run = this.lowestRunOf(size);
    if (run < 0) return -1;
    const first = this.starts[run]!;
    if (first + size > limit) return -1;
    this.starts[run] = first + size;
    this.lengths[run] = this.lengths[run]! - size;
    let node = this.leaves + run;
    this.tree[node] = this.lengths[run]!;
    for (node >>= 1; node >= 1; node >>= 1) this.tree[node] = Math.max(this.tree[2 * node]!, this.tree[2 * node + 1]!);
    return first;
  }

  /** How many free clusters lie below `limit`. */
  clustersBelow(limit: number): number {
    let count = 0;
    for (let run = 0; run < this.starts.length; run++) {
      count += Math.max(0, Math.min(this.starts[run]! + this.lengths[run]!, limit) - this.starts[run]!);
    }
    return count;
  }

  private lowestRunOf(size: number): number {
    if (this.lengths.length === 0 || this.tree[1]! < size) return -1;
    let node = 1;
    while (node < this.leaves) node = this.tree[2 * node]! >= size ? 2 * node : 2 * node + 1;
    return node - this.leaves;
  }
}
