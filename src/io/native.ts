// Loading the native addon (native/qed_native.c): open-file-description locks and the size
// of a block device, which Node's fs cannot provide. It is built by `npm ci` and
// `npm run build`; when it is missing or broken the reason is kept, so that an open needing
// it can say exactly why it is refused instead of quietly doing without.
import { createRequire } from 'node:module';

export type LockKind = 'shared' | 'exclusive' | 'unlock';

export interface NativeIo {
  /** F_OFD_SETLK on one byte: false when another open file description holds a conflicting lock. */
  lockByte(fd: number, byte: number, kind: LockKind): boolean;
  /** F_OFD_GETLK: true when another open file description holds any lock on the byte. */
  isByteLocked(fd: number, byte: number): boolean;
  /** ioctl BLKGETSIZE64. */
  blockDeviceSize(fd: number): number;
  /** lseek SEEK_DATA / SEEK_HOLE: the next data (or hole) at or after offset; -1 past the last data. */
  seekData?(fd: number, offset: number, hole: boolean): number;
  /** preadv2(RWF_NOWAIT): what the page cache holds at position, without waiting; -1 if nothing, -2 if never possible here. */
  readNowait?(fd: number, buf: Uint8Array, position: number): number;
}

export type NativeLoad = { ok: true; io: NativeIo } | { ok: false; reason: string };

/** From dist/src/io/native.js up to the package root, then to node-gyp's output. */
const ADDON_PATH = '../../../native/build/Release/qed_native.node';

let loaded: NativeLoad | undefined;

export function loadNative(): NativeLoad {
  loaded ??= tryLoad();
  return loaded;
}

function tryLoad(): NativeLoad {
  try {
    const io = createRequire(import.meta.url)(ADDON_PATH) as NativeIo;
    return { ok: true, io };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message.split('\n')[0]! : String(err) };
  }
}
