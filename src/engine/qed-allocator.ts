// Cluster allocation (QEMU's qed_alloc_clusters): fresh space only, at or past the file's end
// rounded up to a cluster at open [I4]. Synchronous, so no two callers get the same clusters.

export class ClusterAllocator {
  constructor(private nextFree: number, private readonly clusterSize: number) {}

  /** The first byte no allocation has handed out: always a cluster boundary. */
  get end(): number { return this.nextFree; }

  /** Reserve `count` contiguous clusters; returns the host offset of the first. */
  allocate(count: number): number {
    const host = this.nextFree;
    this.nextFree += count * this.clusterSize;
    return host;
  }
}
