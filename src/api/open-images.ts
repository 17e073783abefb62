// Images the package opened and nobody closed yet. A script that ends without close() would
// lose the table updates still in memory (the guest data is in the file, but nothing points
// at it): the Node entry closes such images when the event loop runs dry, with a warning.
import type { BlockDevice } from '../engine/device.js';

const open = new Set<BlockDevice>();

/** Remember a device until its close() begins. */
export function track<T extends BlockDevice>(device: T): T {
  if (device.readOnly) return device;
  open.add(device);
  const close = device.close.bind(device);
  // An own property shadows the prototype's close for this instance only.
  Object.defineProperty(device, 'close', {
    value: () => { open.delete(device); return close(); },
    configurable: true, writable: true,
  });
  return device;
}

/** Writable images still open. */
export function unclosedImages(): BlockDevice[] {
  return [...open];
}
