// Format probing: QED magic means QED, anything else is raw. Callers skip probing when the
// header says the backing file is raw (QED_F_BACKING_FORMAT_NO_PROBE): a raw disk whose guest
// wrote QED magic into sector 0 must never be reinterpreted as an image.
import { u32le } from '../base/bytes.js';
import { QED_MAGIC } from './constants.js';

/** The formats this library reads and writes. */
export type ImageFormat = 'qed' | 'raw';

export function probeFormat(firstBytes: Uint8Array): ImageFormat {
  return firstBytes.length >= 4 && u32le(firstBytes, 0) === QED_MAGIC ? 'qed' : 'raw';
}

export function isImageFormat(name: string): name is ImageFormat {
  return name === 'qed' || name === 'raw';
}
