// Loop devices for the block-device tests: a scratch file under /dev/shm attached with
// losetup, detached when the test ends. The tests run as root (CI too); losetup failing fails
// the test rather than skipping it.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface LoopDevice { device: string; backing: string }

/** A loop device over a fresh file of `content`. */
export async function loopDevice(t: { after(fn: () => Promise<void>): void }, content: Uint8Array): Promise<LoopDevice> {
  const dir = await mkdtemp('/dev/shm/qed-loop-');
  const backing = join(dir, 'backing.img');
  await writeFile(backing, content);
  let device: string;
  try {
    device = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  t.after(async () => {
    execFileSync('losetup', ['--detach', device]);
    await rm(dir, { recursive: true, force: true });
  });
  return { device, backing };
}
