// Building a layer's runs: adjacent runs of one kind merge (data only where host-contiguous),
// and a walk that must stay within a number of runs stops before the one that would pass it.
import type { LayerExtent } from './device.js';

/** Append as appendMerged does, unless that would make more than maxRuns runs: then false, and out is unchanged. */
export function appendWithin(out: LayerExtent[], e: LayerExtent, firstMergeable: number, maxRuns: number): boolean {
  const prev = out.length > firstMergeable ? out[out.length - 1] : undefined;
  if (out.length >= maxRuns && !(prev && canMerge(prev, e))) return false;
  appendMerged(out, e, firstMergeable);
  return true;
}

function canMerge(prev: LayerExtent, e: LayerExtent): boolean {
  return prev.kind === e.kind && prev.guestOffset + prev.length === e.guestOffset
    && (e.kind !== 'data' || (prev as { hostOffset: number }).hostOffset + prev.length === e.hostOffset);
}

/** Append, merging with the previous run (from index firstMergeable on) when kinds match and data is host-contiguous. */
export function appendMerged(out: LayerExtent[], e: LayerExtent, firstMergeable: number): void {
  const prev = out.length > firstMergeable ? out[out.length - 1] : undefined;
  if (prev && canMerge(prev, e)) { prev.length += e.length; return; }
  out.push(e);
}
