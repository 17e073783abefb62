// Mapping failures to NBD error values: the one place where an error meets the wire (as
// nbdkit's nbd_errno). The caller logs the real cause first.
import { QedError } from '../../base/errors.js';
import { NBD_EINVAL, NBD_EIO, NBD_ENOMEM, NBD_ENOSPC, NBD_ENOTSUP, NBD_EPERM, NBD_ESHUTDOWN } from '../protocol/constants.js';

export function nbdErrorOf(err: unknown): number {
  if (!(err instanceof QedError)) return NBD_EIO;
  switch (err.code) {
    case 'READ_ONLY': return NBD_EPERM;
    case 'RANGE':
    case 'USAGE': return NBD_EINVAL;
    case 'SHUTDOWN':
    case 'CLOSED': return NBD_ESHUTDOWN;
    case 'FAST_ZERO': return NBD_ENOTSUP;
    case 'IO':
      if (err.errno === 'ENOSPC' || err.errno === 'EDQUOT' || err.errno === 'EFBIG') return NBD_ENOSPC;
      if (err.errno === 'ENOMEM') return NBD_ENOMEM;
      return NBD_EIO;
    default: return NBD_EIO; // FORMAT, POISONED, CHAIN, UNSUPPORTED: the image, not the request, is at fault
  }
}

/** One line for the server log: what failed, without a stack. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
