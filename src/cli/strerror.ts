// C's strerror() texts for the errors our layers raise, so that lines such as qemu-io's
// "write failed: Input/output error" read as QEMU's tools print them.
import { QedError } from '../base/errors.js';

const TEXTS: Record<string, string> = {
  EIO: 'Input/output error',
  EPERM: 'Operation not permitted',
  EACCES: 'Permission denied',
  ENOENT: 'No such file or directory',
  EINVAL: 'Invalid argument',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  EFBIG: 'File too large',
  ENOTSUP: 'Operation not supported',
  EISDIR: 'Is a directory',
  EBUSY: 'Device or resource busy',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  ERANGE: 'Numerical result out of range',
};

/** The errno name QEMU would have returned for this error. */
export function errnoOf(err: unknown): string {
  const errno = (err as { errno?: unknown })?.errno;
  if (typeof errno === 'string' && errno in TEXTS) return errno;
  const code = (err as { code?: unknown })?.code;
  const cause = (err as { cause?: { code?: unknown } })?.cause?.code;
  if (typeof cause === 'string' && cause in TEXTS) return cause;
  if (typeof code === 'string' && code in TEXTS) return code;
  if (err instanceof QedError) {
    // A request past the end or on a poisoned image is EIO in QEMU's block layer; writing a
    // read-only node is EPERM; an unsupported request ENOTSUP.
    if (err.code === 'READ_ONLY') return 'EPERM';
    if (err.code === 'UNSUPPORTED') return 'ENOTSUP';
    if (err.code === 'USAGE') return 'EINVAL';
  }
  return 'EIO';
}

export function strerror(err: unknown): string {
  return TEXTS[errnoOf(err)]!;
}
