// The size of a block device. fstat reports 0 for one, so it is asked of the kernel: the
// BLKGETSIZE64 ioctl through the native addon, or, without the addon, sysfs, which gives the
// size in 512-byte sectors whatever the device's logical block size.
import { readFile } from 'node:fs/promises';
import type { NativeLoad } from './native.js';

const SYSFS_SECTOR = 512;

/** Linux's dev_t layout (glibc's gnu_dev_major / gnu_dev_minor). */
export function splitDeviceNumber(rdev: bigint): { major: bigint; minor: bigint } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major, minor };
}

/** /sys/dev/block/MAJOR:MINOR/size × 512; `sysfsRoot` lets a test stand in a fake tree. */
export async function blockDeviceSizeFromSysfs(rdev: bigint, sysfsRoot = '/sys'): Promise<number> {
  const { major, minor } = splitDeviceNumber(rdev);
  const text = await readFile(`${sysfsRoot}/dev/block/${major}:${minor}/size`, 'utf8');
  const sectors = Number(text.trim());
  if (!Number.isSafeInteger(sectors) || sectors < 0) throw new Error(`unexpected sector count '${text.trim()}' in sysfs for device ${major}:${minor}`);
  return sectors * SYSFS_SECTOR;
}

export async function blockDeviceSize(fd: number, rdev: bigint, native: NativeLoad): Promise<number> {
  return native.ok ? native.io.blockDeviceSize(fd) : blockDeviceSizeFromSysfs(rdev);
}
