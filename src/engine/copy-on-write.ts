// Copy-on-write for a run of newly allocated clusters: the written bytes, with the old
// content (what the backing chain showed) around them, so each new cluster is whole. The
// caller's buffer is written as it is wherever it covers whole clusters; only the partial
// clusters at the edges get a buffer of their own. Touches only the BlockFile it is given.
import type { BlockFile } from '../io/block-file.js';
import { settleAll } from './device.js';

export interface CopyOnWriteRun {
  data: Uint8Array;
  guestOffset: number;
  /** Host offset of the first new cluster. */
  hostOffset: number;
  /** Guest range of the new clusters: cluster-aligned, covering the data. */
  runStart: number;
  runEnd: number;
}

export async function writeWithOldContentAround(
  file: BlockFile,
  readOld: (slice: Uint8Array, guestOffset: number) => Promise<void>,
  clusterSize: number,
  run: CopyOnWriteRun,
): Promise<void> {
  const { data, guestOffset, hostOffset: host, runStart, runEnd } = run;
  const dataEnd = guestOffset + data.length;
  const headClusterEnd = Math.min(runStart + clusterSize, runEnd);
  const tailClusterStart = Math.max(runEnd - clusterSize, runStart);
  const writes: Promise<void>[] = [];
  if (guestOffset === runStart && dataEnd === runEnd) {
    writes.push(file.write(data, host));
  } else if (headClusterEnd >= dataEnd || tailClusterStart <= guestOffset) {
    // The written range sits in one boundary cluster only: build the whole run in one buffer.
    const whole = new Uint8Array(runEnd - runStart);
    await readOld(whole.subarray(0, guestOffset - runStart), runStart);
    await readOld(whole.subarray(dataEnd - runStart), dataEnd);
    whole.set(data, guestOffset - runStart);
    writes.push(file.write(whole, host));
  } else {
    // Head cluster, untouched middle straight from the caller's buffer, tail cluster.
    const head = new Uint8Array(headClusterEnd - runStart);
    await readOld(head.subarray(0, guestOffset - runStart), runStart);
    head.set(data.subarray(0, headClusterEnd - guestOffset), guestOffset - runStart);
    const tail = new Uint8Array(runEnd - tailClusterStart);
    tail.set(data.subarray(tailClusterStart - guestOffset), 0);
    await readOld(tail.subarray(dataEnd - tailClusterStart), dataEnd);
    writes.push(file.write(head, host));
    if (tailClusterStart > headClusterEnd) {
      writes.push(file.write(data.subarray(headClusterEnd - guestOffset, tailClusterStart - guestOffset), host + (headClusterEnd - runStart)));
    }
    writes.push(file.write(tail, host + (tailClusterStart - runStart)));
  }
  await settleAll(writes); // [L2]
}
