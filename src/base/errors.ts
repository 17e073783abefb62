// One error family for the whole project. Every error names what failed, in which file and
// at which offset, so that a front end can print one line and map it to an exit code or an
// NBD errno in exactly one place.

/** Stable codes, one per error class: test `err.code` rather than messages. */
export type ErrorCode =
  | 'FORMAT'       // the bytes on disk break the QED rules
  | 'UNSUPPORTED'  // valid, but something we deliberately do not do
  | 'IO'           // the host file system failed
  | 'USAGE'        // the caller asked for something impossible (bad argument, size or option)
  | 'RANGE'        // request outside the device
  | 'READ_ONLY'    // write to a read-only device
  | 'CHAIN'        // backing chain problem (loop, too deep, missing, refused by the policy)
  | 'LOCKED'       // another process holds the image (QEMU's byte-range locks)
  | 'NEEDS_CHECK'  // a read-write open of an image whose NEED_CHECK is set, without repair
  | 'CLOSED'       // device used after close
  | 'SHUTDOWN'     // request arrived while the device was closing (NBD: ESHUTDOWN)
  | 'POISONED'     // earlier metadata failure; reopen required
  | 'FAST_ZERO'    // a fast zero was asked for and the range cannot be zeroed cheaply (NBD: ENOTSUP)
  | 'ABORTED';     // the caller's AbortSignal fired

/** What an error may say besides its message; every field is optional. */
export interface ErrorDetails {
  /** The file the failure concerns. */
  path?: string;
  /** Offset in the guest's view of the disk (what read/write take). */
  guestOffset?: number;
  /** Offset in the image file on the host (where a table or cluster lives). */
  hostOffset?: number;
  /** The header field or structure at fault. */
  field?: string;
  cause?: unknown;
  /** The operating system's error code (ENOENT, ENOSPC, EAGAIN…), when it gave one. */
  errno?: string;
}

/**
 * The base of every error the library throws. Test `code` (stable) or `instanceof` the
 * subclass; `message` is one line meant for people and may change.
 */
export class QedError extends Error {
  readonly code: ErrorCode;
  readonly path?: string;
  readonly guestOffset?: number;
  readonly hostOffset?: number;
  readonly field?: string;
  readonly errno?: string;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.path = details.path;
    this.guestOffset = details.guestOffset;
    this.hostOffset = details.hostOffset;
    this.field = details.field;
    // The OS error of a wrapped failure stays visible at the top (a missing backing file's ENOENT).
    this.errno = details.errno ?? errnoOf(details.cause);
  }
}

function errnoOf(cause: unknown): string | undefined {
  if (cause instanceof QedError) return cause.errno;
  const code = (cause as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/** The image breaks the QED rules (a bad header, a table entry pointing past the file…). */
export class FormatError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('FORMAT', message, details); }
}
/** Valid, but deliberately not done; the message starts with "not supported:". */
export class UnsupportedError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('UNSUPPORTED', `not supported: ${message}`, details); }
}
/** The host failed an operation on a file; `errno` says how. */
export class IoError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('IO', message, details); }
}
/** A bad argument or option from the caller. */
export class UsageError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('USAGE', message, details); }
}
/** A request reaches past the end of the device. */
export class OutOfRangeError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('RANGE', message, details); }
}
/** A write to an image opened read-only. */
export class ReadOnlyError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('READ_ONLY', message, details); }
}
/** The backing chain cannot be followed: missing file, loop, too deep, refused by the backing policy. */
export class ChainError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('CHAIN', message, details); }
}
/** Another process has the image open in a way that conflicts (errno EAGAIN). */
export class LockedError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('LOCKED', message, { errno: 'EAGAIN', ...details }); }
}
/** A read-write open of an image with NEED_CHECK set where no repair was allowed. */
export class NeedsCheckError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('NEEDS_CHECK', message, details); }
}
/** The device was used after close(). */
export class ClosedError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('CLOSED', message, details); }
}
/** A request arrived after close() began. */
export class ShutdownError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('SHUTDOWN', message, details); }
}
/** An earlier failure left memory and disk disagreeing; reopen the image (the open repairs it). */
export class PoisonedError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('POISONED', message, details); }
}
/** A fast zero was asked for and the range cannot be zeroed without writing zeros. */
export class FastZeroError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('FAST_ZERO', message, details); }
}
/** The caller's AbortSignal fired; `cause` is the signal's reason. */
export class AbortError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('ABORTED', message, details); }
}

/** The error, naming `path` if it names no file yet (a size refused before any file was touched). */
export function withPath(err: unknown, path: string): unknown {
  if (err instanceof QedError && err.path === undefined) (err as { path?: string }).path = path;
  return err;
}

/** Throw AbortError if the signal has fired: long operations call it between steps. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string, path?: string): void {
  if (signal?.aborted) throw new AbortError(`${what} aborted`, { path, cause: signal.reason });
}

/** Hex offsets in messages, as the style guide asks: "at 0x90000". */
export function hex(n: number | bigint): string {
  // Table entries beyond 2^53 are read as Infinity (see entryAt): say what is known.
  if (typeof n === 'number' && !Number.isFinite(n)) return 'an offset of 2^53 or more';
  return '0x' + n.toString(16);
}

/** Text from an image (a backing name) made safe for one line on a terminal: control characters as \xNN. */
export function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'No such file or directory', EACCES: 'Permission denied', EISDIR: 'Is a directory',
  ENOSPC: 'No space left on device', EIO: 'Input/output error', EROFS: 'Read-only file system',
  EPERM: 'Operation not permitted', ENOTDIR: 'Not a directory', EMFILE: 'Too many open files',
  EBUSY: 'Device or resource busy', EEXIST: 'File exists', EFBIG: 'File too large', ELOOP: 'Too many levels of symbolic links',
};

/** Node's fs errors carry an errno code; keep it so ENOSPC stays ENOSPC up to the front end. */
export function wrapIoError(op: string, path: string, offset: number | undefined /* in the file */, cause: unknown): IoError {
  const errno = (cause as { code?: unknown })?.code;
  const known = typeof errno === 'string' ? ERRNO_TEXT[errno] : undefined;
  const reason = known ?? (cause instanceof Error ? cause.message : String(cause));
  if (op === 'open' || op === 'create' || op === 'remove') {
    return new IoError(`could not ${op} '${path}': ${reason}`, { path, cause, errno: typeof errno === 'string' ? errno : undefined });
  }
  const where = offset === undefined ? '' : ` at ${hex(offset)}`;
  return new IoError(`${op} failed${where}: ${reason}`, {
    path, hostOffset: offset, cause, errno: typeof errno === 'string' ? errno : undefined,
  });
}
