// A block device has its real size: fstat says 0 for one, so it is asked of the kernel
// (BLKGETSIZE64 through the addon, sysfs without it). Runs on loop devices over scratch files.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { blockDeviceSizeFromSysfs, splitDeviceNumber } from '../../../src/io/block-device.js';
import { NodeFile } from '../../../src/io/node-file.js';
import { loopDevice } from '../../support/loop-device.js';

/** Not a multiple of 4 KiB, so a size rounded to pages or taken from elsewhere would show. */
const DEVICE_BYTES = 3 * 1024 * 1024 + 512;

test('a block device opened read-only and read-write reports its real size, not fstat\'s 0', async (t) => {
  const { device } = await loopDevice(t, new Uint8Array(DEVICE_BYTES));
  assert.equal((await stat(device)).size, 0, 'the premise: fstat says 0 for a block device');
  for (const mode of ['read-only', 'read-write'] as const) {
    const file = await NodeFile.open(device, mode);
    assert.equal(await file.size(), DEVICE_BYTES, mode);
    await file.close();
  }
});

test('without the native addon the size comes from sysfs, and agrees with the ioctl', async (t) => {
  const { device } = await loopDevice(t, new Uint8Array(DEVICE_BYTES));
  const file = await NodeFile.open(device, 'read-only', { native: { ok: false, reason: 'test' } });
  assert.equal(await file.size(), DEVICE_BYTES);
  await file.close();
  const rdev = (await stat(device, { bigint: true })).rdev;
  assert.equal(await blockDeviceSizeFromSysfs(rdev), DEVICE_BYTES);
});

test('sysfs sizes are 512-byte sectors under /sys/dev/block/MAJOR:MINOR, with Linux\'s split of large device numbers', async (t) => {
  const root = await mkdtemp('/dev/shm/qed-sysfs-');
  t.after(() => rm(root, { recursive: true, force: true }));
  // major 259, minor 300: both beyond the old 8-bit fields.
  const rdev = (259n << 8n) | (300n & 0xffn) | ((300n & ~0xffn) << 12n);
  assert.deepEqual(splitDeviceNumber(rdev), { major: 259n, minor: 300n });
  await mkdir(join(root, 'dev/block/259:300'), { recursive: true });
  await writeFile(join(root, 'dev/block/259:300/size'), '20971520\n');
  assert.equal(await blockDeviceSizeFromSysfs(rdev, root), 20971520 * 512);
  await writeFile(join(root, 'dev/block/259:300/size'), 'garbage\n');
  await assert.rejects(blockDeviceSizeFromSysfs(rdev, root), /unexpected sector count 'garbage'/);
});
