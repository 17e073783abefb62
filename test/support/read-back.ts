// Reading guest bytes back through a fresh read-only open, as a later process would.
import type { FileStore } from '../../src/io/block-file.js';
import { openDevice } from '../../src/ops/open.js';

export async function readBack(store: FileStore, path: string, offset: number, length: number): Promise<Uint8Array> {
  const device = await openDevice(path, { store, readOnly: true });
  try {
    const buf = new Uint8Array(length);
    await device.read(buf, offset);
    return buf;
  } finally {
    await device.close();
  }
}
