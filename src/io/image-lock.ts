// Advisory image locking, in QEMU's scheme so that qed and QEMU's tools respect each other.
//
// QEMU's file-posix driver (block/file-posix.c, raw_apply_lock_bytes / raw_check_lock_bytes)
// describes an open by two sets of permissions (include/block/block-common.h, BLK_PERM_*):
// the ones it holds and the ones it refuses to share. It takes a *shared* open-file-description
// lock on one byte per permission:
//
//   byte 100 + i   for each permission i it holds
//   byte 200 + i   for each permission i it does not share
//
// and then tests, as if for an exclusive lock, the bytes that would contradict it:
//
//   200 + i for each permission i it wants     -> 'Failed to get "<name>" lock'
//   100 + i for each permission i it refuses   -> 'Failed to get shared "<name>" lock'
//
// Every lock is shared, so taking them never fails; conflicts show only in the test. Taking
// before testing matters: two openers racing both see each other and at worst both fail,
// never both succeed. Open-file-description locks conflict between two opens of one process
// as between two processes, so this also keeps one writer per image inside one process.
//
// What QEMU 7.2 takes on a QED image (observed in /proc/locks), which we take on every file:
//   read-only open (and every backing file)   hold {consistent read}, refuse {write, resize}
//   read-only open with -U (force-share)      hold {consistent read}, refuse nothing
//   read-write open                           hold {consistent read, write, resize},
//                                             refuse {write, resize}
//   creating a file (raw_co_create)           hold {write, resize}, refuse {resize}
import { LockedError } from '../base/errors.js';

/** QEMU's BLK_PERM_* bit numbers; the lock bytes are offsets from the two bases. */
export const PERM_CONSISTENT_READ = 0;
export const PERM_WRITE = 1;
export const PERM_WRITE_UNCHANGED = 2;
export const PERM_RESIZE = 3;
export const LOCK_PERM_BASE = 100;
export const LOCK_SHARED_BASE = 200;

/** The names QEMU's bdrv_perm_names() prints in its lock errors. */
const PERMISSION_NAMES = ['consistent read', 'write', 'write unchanged', 'resize'] as const;

export function nameOfPermission(permission: number): string {
  return PERMISSION_NAMES[permission] ?? `permission ${permission}`;
}

export type LockAccess = 'read-only' | 'read-only-force-share' | 'read-write' | 'create';

export interface Permissions {
  held: readonly number[];
  unshared: readonly number[];
}

export function permissionsFor(access: LockAccess): Permissions {
  switch (access) {
    case 'read-only': return { held: [PERM_CONSISTENT_READ], unshared: [PERM_WRITE, PERM_RESIZE] };
    case 'read-only-force-share': return { held: [PERM_CONSISTENT_READ], unshared: [] };
    case 'read-write': return { held: [PERM_CONSISTENT_READ, PERM_WRITE, PERM_RESIZE], unshared: [PERM_WRITE, PERM_RESIZE] };
    case 'create': return { held: [PERM_WRITE, PERM_RESIZE], unshared: [PERM_RESIZE] };
  }
}

/**
 * Single-byte locks of one open file: over fcntl for local files, over a table for memory
 * files. Locks of the same opener never conflict with each other.
 */
export interface ByteLocks {
  /** Take a shared lock on `byte`. */
  lockShared(byte: number): void;
  unlock(byte: number): void;
  /** True when another opener holds any lock on `byte`. */
  isLockedByOthers(byte: number): boolean;
}

/** Another opener's permissions contradict ours; `permission` names the one in question. */
export class LockConflictError extends LockedError {
  constructor(readonly permission: string, readonly sharedLock: boolean, path: string) {
    super(`Failed to get ${sharedLock ? 'shared ' : ''}"${permission}" lock: Is another process using the image [${path}]?`, { path });
  }
}

/**
 * Take the locks of `access` on an open file, or throw LockConflictError and leave no lock
 * behind. The locks last until the file is closed (closing the descriptor drops them).
 */
export function lockImage(locks: ByteLocks, access: LockAccess, path: string): void {
  const { held, unshared } = permissionsFor(access);
  const taken = [...held.map((p) => LOCK_PERM_BASE + p), ...unshared.map((p) => LOCK_SHARED_BASE + p)];
  const done: number[] = [];
  try {
    for (const byte of taken) { locks.lockShared(byte); done.push(byte); }
    for (const p of held) {
      if (locks.isLockedByOthers(LOCK_SHARED_BASE + p)) throw new LockConflictError(nameOfPermission(p), false, path);
    }
    for (const p of unshared) {
      if (locks.isLockedByOthers(LOCK_PERM_BASE + p)) throw new LockConflictError(nameOfPermission(p), true, path);
    }
  } catch (err) {
    for (const byte of done) {
      try { locks.unlock(byte); } catch { /* the close that follows drops it anyway */ }
    }
    throw err;
  }
}
