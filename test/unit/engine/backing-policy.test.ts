// A backing name is the image's word, and images travel: with a backing root only names that
// resolve inside it (no '..') are followed, and backing files can be refused altogether. The
// refusal names the backing file, escaped.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QedError } from '../../../src/base/errors.js';
import { NodeFileStore } from '../../../src/io/node-file.js';
import { createImage } from '../../../src/ops/create.js';
import { openDevice } from '../../../src/ops/open.js';
import { qed } from '../../support/qemu.js';

const MiB = 2 ** 20;

async function layout(t: { after(fn: () => Promise<void>): void }): Promise<{ root: string; outside: string; store: NodeFileStore }> {
  const top = await mkdtemp(join(tmpdir(), 'qed-policy-'));
  t.after(() => rm(top, { recursive: true, force: true }));
  const root = join(top, 'images');
  const outside = join(top, 'secret.raw');
  await mkdir(root);
  await writeFile(outside, new Uint8Array(MiB).fill(0x5e));
  await writeFile(join(root, 'base.raw'), new Uint8Array(MiB).fill(0x11));
  await symlink(outside, join(root, 'link.raw'));
  const store = new NodeFileStore();
  await createImage(join(root, 'good.qed'), { store, size: MiB, backingFile: 'base.raw', backingFormat: 'raw' });
  await createImage(join(root, 'dotdot.qed'), { store, size: MiB, backingFile: '../secret.raw', backingFormat: 'raw' });
  await createImage(join(root, 'absolute.qed'), { store, size: MiB, backingFile: outside, backingFormat: 'raw' });
  await createImage(join(root, 'symlink.qed'), { store, size: MiB, backingFile: 'link.raw', backingFormat: 'raw' });
  return { root, outside, store };
}

test('under a backing root: names inside are followed; .., absolute paths outside and symlinks out are refused', async (t) => {
  const { root, store } = await layout(t);
  const policy = { follow: 'under' as const, root };
  const good = await openDevice(join(root, 'good.qed'), { store, readOnly: true, backingPolicy: policy });
  const buf = new Uint8Array(512);
  await good.read(buf, 0);
  assert.equal(buf[0], 0x11);
  await good.close();
  for (const name of ['dotdot.qed', 'absolute.qed', 'symlink.qed']) {
    await assert.rejects(openDevice(join(root, name), { store, readOnly: true, backingPolicy: policy }),
      (err: unknown) => err instanceof QedError && err.code === 'CHAIN' && /refused/.test(err.message), name);
  }
  // The default follows them, as QEMU does.
  const dotdot = await openDevice(join(root, 'dotdot.qed'), { store, readOnly: true });
  await dotdot.close();
});

test('no backing files at all: any image with one is refused; the CLI flags set the policy', async (t) => {
  const { root, store } = await layout(t);
  await assert.rejects(openDevice(join(root, 'good.qed'), { store, readOnly: true, backingPolicy: { follow: 'none' } }),
    (err: unknown) => err instanceof QedError && err.code === 'CHAIN');
  const refused = await qed(['--no-backing-files', 'io', '-r', '-c', 'read 0 512', join(root, 'good.qed')]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /backing files are not allowed/);
  const confined = await qed(['--backing-root', root, 'io', '-r', '-c', 'read -P 0x5e 0 512', join(root, 'dotdot.qed')]);
  assert.equal(confined.code, 1);
  assert.match(confined.stderr, /refused/);
  const inside = await qed(['--backing-root', root, 'io', '-r', '-c', 'read -P 0x11 0 512', join(root, 'good.qed')]);
  assert.equal(inside.code, 0, inside.stderr);
  const served = await qed(['--backing-root', root, 'info', '--backing-chain', join(root, 'symlink.qed')]);
  assert.equal(served.code, 1, 'info --backing-chain follows the same policy');
});
