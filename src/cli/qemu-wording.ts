// Errors in the words QEMU's tools use for the same failure, for qed running as qemu-img or
// qemu-io (persona.ts): scripts and QEMU's own iotests compare these lines. Under its own
// name qed keeps its more specific messages.
import { QedError } from '../base/errors.js';
import { strerror } from './strerror.js';

/** QEMU's QED driver's reasons for refusing a header, by the field our validation names. */
const HEADER_FIELDS: Record<string, string> = {
  magic: 'Image not in QED format',
  cluster_size: 'QED cluster size is invalid',
  table_size: 'QED table size is invalid',
  header_size: 'QED table offset is invalid',
  l1_table_offset: 'QED table offset is invalid',
  image_size: 'QED image size is invalid',
};

export function qemuWording(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err instanceof QedError) {
    if (err.code === 'FORMAT' && err.field !== undefined && err.field in HEADER_FIELDS) return HEADER_FIELDS[err.field]!;
    if (err.code === 'CHAIN' && err.field === 'backing-loop') return `Backing file '${err.path}' creates an infinite loop.`;
    if (err.code === 'CHAIN' && err.field === 'backing-open') return `Could not open backing file: ${qemuWording(err.cause)}`;
    if (err.code === 'IO' && err.errno !== undefined && /^could not open '/.test(err.message)) return `Could not open '${err.path}': ${strerror(err)}`;
  }
  return err.message.charAt(0).toUpperCase() + err.message.slice(1);
}
