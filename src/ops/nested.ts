// An image stored inside another image: the inner image's "file" is the outer image's guest
// content (QEMU stacks format drivers the same way; qemu-iotests 072 keeps a QED image in a
// QED image). The outer device grows when the inner image writes past its end.
import { UnsupportedError } from '../base/errors.js';
import type { BlockFile, FileStore, OpenFileOptions, OpenMode } from '../io/block-file.js';
import { defaultFileStore } from '../io/default-store.js';
import type { BlockDevice } from '../engine/device.js';

class DeviceFile implements BlockFile {
  constructor(private readonly device: BlockDevice, readonly path: string, readonly readOnly: boolean) {}

  async read(buf: Uint8Array, offset: number): Promise<number> {
    const present = Math.max(0, Math.min(buf.length, this.device.size - offset));
    buf.fill(0, present);
    if (present > 0) await this.device.read(buf.subarray(0, present), offset);
    return present;
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    if (offset + buf.length > this.device.size) await this.device.resize(offset + buf.length);
    await this.device.write(buf, offset);
  }

  flush(): Promise<void> { return this.device.flush(); }
  async size(): Promise<number> { return this.device.size; }
  truncate(size: number): Promise<void> { return this.device.resize(size); }
  /** The outer device belongs to whoever opened it; closing the inner image leaves it open. */
  async close(): Promise<void> {}
}

/** A store in which `name` is the content of `outer`; every other name is a local file. */
export function nestedStore(outer: BlockDevice, name: string, base: FileStore = defaultFileStore()): FileStore {
  return {
    open: async (path: string, mode: OpenMode, options?: OpenFileOptions) => {
      if (path !== name) return base.open(path, mode, options);
      if (mode === 'read-write' && outer.readOnly) throw new UnsupportedError('writing an image inside a read-only image');
      return new DeviceFile(outer, name, mode === 'read-only');
    },
    create: (path, options) => base.create(path, options),
    resolveBacking: (imagePath, backingName) => base.resolveBacking(imagePath, backingName),
    identity: async (path) => (path === name ? `nested:${name}` : base.identity(path)),
  };
}
