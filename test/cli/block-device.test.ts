// `qed convert -n` onto an existing block device (issue 11): a block device reported size 0
// (fstat's), so the copy was refused as "target smaller than the source".
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
import { MiB, noise, ok, qed, scratch, writeRaw } from '../support/cli-run.js';
import { loopDevice } from '../support/loop-device.js';

it('qed convert -n copies a QED image onto a block device of the same size, and qed info reports its size', async (t) => {
  const dir = await scratch(t);
  const content = noise(2 * MiB, 0x11);
  content.fill(0, MiB / 2, MiB);
  await writeRaw(join(dir, 'src.raw'), content);
  await ok('convert to qed', qed(['convert', '-O', 'qed', 'src.raw', 'src.qed'], dir));
  const { device, backing } = await loopDevice(t, noise(2 * MiB, 0x22));
  await ok('convert -n onto the device', qed(['convert', '-n', '-f', 'qed', 'src.qed', device], dir));
  await ok('flush', qed(['io', '-f', 'raw', '-c', 'flush', device], dir));
  assert.deepEqual(new Uint8Array(await readFile(backing)), content);
  const info = JSON.parse((await ok('info', qed(['info', '--output=json', '-f', 'raw', device], dir))).stdout) as { 'virtual-size': number };
  assert.equal(info['virtual-size'], 2 * MiB);
});
