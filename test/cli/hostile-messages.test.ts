// What an image says must not break our one-line errors: control characters and terminal
// escapes in a backing name are printed as \xNN, a table entry beyond 2^53 is described
// rather than printed as "0xInfinity", and check of an image with unknown feature bits fails
// with exit 1 as qemu-img's does (63 is for formats that have no check at all).
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageBuilder } from '../support/image-builder.js';
import { qed, qemuImg } from '../support/qemu.js';

const CS = 0x10000;

async function scratch(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'qed-msg-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a backing name with terminal escapes and newlines is printed escaped, on one line', async (t) => {
  const dir = await scratch(t);
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, imageSize: 16 * CS }).backing('no\x1b[31mred\nsuch\x07file');
  const path = join(dir, 'evil.qed');
  await writeFile(path, b.toBytes());
  const r = await qed(['io', '-r', '-c', 'read 0 512', path]);
  assert.notEqual(r.code, 0);
  assert.equal(r.stderr.split('\n').filter((l) => l !== '').length, 1, JSON.stringify(r.stderr));
  assert.ok(!/[\x00-\x09\x0b-\x1f\x7f]/.test(r.stderr), `raw control characters in ${JSON.stringify(r.stderr)}`);
  assert.match(r.stderr, /no\\x1b\[31mred\\x0asuch\\x07file/);
});

test('a table entry beyond 2^53 is described, not printed as 0xInfinity', async (t) => {
  const dir = await scratch(t);
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, imageSize: 16 * CS });
  b.mapData(0, 0x11);
  b.setL2(b.tableOf(0), 1, 0x7fff_0000_0000_0000n);
  const path = join(dir, 'huge.qed');
  await writeFile(path, b.toBytes());
  const r = await qed(['io', '-r', '-c', `read ${CS} 512`, path]);
  assert.doesNotMatch(r.stdout + r.stderr, /Infinity/);
  assert.match(r.stdout + r.stderr, /2\^53 or more/);
  const check = await qed(['check', path]);
  assert.doesNotMatch(check.stdout + check.stderr, /Infinity/);
});

test('check of an image with unknown feature bits exits 1 as qemu-img does; a raw image has no check (63)', async (t) => {
  const dir = await scratch(t);
  const b = new ImageBuilder({ clusterSize: CS, tableSize: 4, imageSize: 16 * CS });
  b.header.features = 1n << 40n;
  const path = join(dir, 'future.qed');
  await writeFile(path, b.toBytes());
  const ours = await qed(['check', path]);
  const theirs = await qemuImg(['check', path]);
  assert.equal(theirs.code, 1);
  assert.equal(ours.code, 1, ours.stderr);
  const raw = join(dir, 'disk.raw');
  await writeFile(raw, new Uint8Array(4096));
  assert.equal((await qed(['check', '-f', 'raw', raw])).code, (await qemuImg(['check', '-f', 'raw', raw])).code);
});
