// One error family for the whole project. Every error names what failed, in which file and
// at which offset, so that a front end can print one line and map it to an exit code or an
// NBD errno in exactly one place.

export type ErrorCode =
  | 'FORMAT'       // the bytes on disk break the QED rules
  | 'UNSUPPORTED'  // valid, but something we deliberately do not do
  | 'IO'           // the host file system failed
  | 'USAGE'        // the caller asked for something impossible (bad size, bad option)
  | 'RANGE'        // request outside the device
  | 'READ_ONLY'    // write to a read-only device
  | 'CHAIN'        // backing chain problem (loop, too deep, missing)
  | 'CLOSED'       // device used after close
  | 'SHUTDOWN'     // request arrived while the device was closing (NBD: ESHUTDOWN)
  | 'POISONED'     // earlier metadata failure; reopen required
  | 'FAST_ZERO';   // a fast zero was asked for and the range cannot be zeroed cheaply (NBD: ENOTSUP)

export interface ErrorDetails {
  path?: string;
  offset?: number;
  field?: string;
  cause?: unknown;
  errno?: string;
}

export class QedError extends Error {
  readonly code: ErrorCode;
  readonly path?: string;
  readonly offset?: number;
  readonly field?: string;
  readonly errno?: string;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.path = details.path;
    this.offset = details.offset;
    this.field = details.field;
    this.errno = details.errno;
  }
}

export class FormatError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('FORMAT', message, details); }
}
export class UnsupportedError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('UNSUPPORTED', `not supported: ${message}`, details); }
}
export class IoError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('IO', message, details); }
}
export class UsageError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('USAGE', message, details); }
}
export class RangeError_ extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('RANGE', message, details); }
}
export class ReadOnlyError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('READ_ONLY', message, details); }
}
export class ChainError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('CHAIN', message, details); }
}

export class ClosedError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('CLOSED', message, details); }
}
export class ShutdownError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('SHUTDOWN', message, details); }
}
export class PoisonedError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('POISONED', message, details); }
}
export class FastZeroError extends QedError {
  constructor(message: string, details: ErrorDetails = {}) { super('FAST_ZERO', message, details); }
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
  EBUSY: 'Device or resource busy', EFBIG: 'File too large', ELOOP: 'Too many levels of symbolic links',
};

/** Node's fs errors carry an errno code; keep it so ENOSPC stays ENOSPC up to the front end. */
export function wrapIoError(op: string, path: string, offset: number | undefined, cause: unknown): IoError {
  const errno = (cause as { code?: unknown })?.code;
  const known = typeof errno === 'string' ? ERRNO_TEXT[errno] : undefined;
  const reason = known ?? (cause instanceof Error ? cause.message : String(cause));
  if (op === 'open' || op === 'create') {
    return new IoError(`could not ${op} '${path}': ${reason}`, { path, cause, errno: typeof errno === 'string' ? errno : undefined });
  }
  const where = offset === undefined ? '' : ` at ${hex(offset)}`;
  return new IoError(`${op} failed${where}: ${reason}`, {
    path, offset, cause, errno: typeof errno === 'string' ? errno : undefined,
  });
}
