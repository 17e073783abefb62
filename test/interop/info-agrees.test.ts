// `qed info` reports what `qemu-img info` reports for the same file: the same JSON keys in the
// same order with the same values (human output too), for plain QED, QED over raw, QED over
// QED, raw, relative and absolute backing names, and whole chains with --backing-chain.
// Every image here was made by QEMU's tools, so only the reporting is under test.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MiB, Rng, commandArgs, describeRun, keysOf, newScratchDir, qed, qemuImg, qemuIo, removeScratchDir, succeed, writeRawFile,
} from '../support/qemu.js';

let dir = '';

async function qemuIoWrite(image: string, commands: string[]): Promise<void> {
  await succeed(`qemu-io ${image}`, qemuIo(['-f', 'qed', ...commandArgs(commands), image], { cwd: dir }));
}

async function create(args: string[]): Promise<void> {
  await succeed(`qemu-img create ${args.join(' ')}`, qemuImg(['create', '-q', '-f', 'qed', ...args], { cwd: dir }));
}

before(async () => {
  dir = await newScratchDir();
  const rng = new Rng(1);
  await writeRawFile(join(dir, 'base.raw'), rng.bytes(MiB));
  await writeRawFile(join(dir, 'odd.raw'), rng.bytes(100000)); // QEMU reports it as 100352 bytes
  await create(['plain.qed', '1G']);
  await qemuIoWrite('plain.qed', ['write -P 1 0 64k', 'write -P 2 1M 4k', 'write -z 2M 128k']);
  await create(['-o', 'cluster_size=4096,table_size=16', 'small.qed', String(8 * MiB + 1536)]);
  await qemuIoWrite('small.qed', ['write -P 3 4k 12k', 'write -z 1M 7000']);
  await create(['-o', 'cluster_size=1M', 'big.qed', String(6 * MiB + 3584)]);
  await qemuIoWrite('big.qed', ['write -P 4 3M 100']);
  await create(['-b', 'base.raw', '-F', 'raw', 'over-raw.qed', '2M']);
  await qemuIoWrite('over-raw.qed', ['write -P 5 64k 4k']);
  await create(['-b', 'odd.raw', '-F', 'raw', 'over-odd.qed']); // size taken from the backing file
  await create(['-b', 'over-raw.qed', '-F', 'qed', 'over-qed.qed']);
  await qemuIoWrite('over-qed.qed', ['write -P 6 1M 64k']);
  await mkdir(join(dir, 'sub'));
  await create(['-b', '../base.raw', '-F', 'raw', 'sub/up.qed', '2M']);
  await create(['-b', '../over-raw.qed', '-F', 'qed', 'sub/up-qed.qed']);
  await create(['-b', join(dir, 'base.raw'), '-F', 'raw', 'absolute.qed', '2M']);
  await create(['-b', 'base.raw', '-F', 'raw', 'dirty.qed', '2M']);
  await qemuIoWrite('dirty.qed', ['write -P 7 0 4k']);
  await setNeedCheck(join(dir, 'dirty.qed'));
});

after(() => removeScratchDir(dir));

/** Set NEED_CHECK (bit 0x2 of features at byte 16) as a crash would leave it. */
async function setNeedCheck(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const byte = new Uint8Array(1);
    await handle.read(byte, 0, 1, 16);
    byte[0]! |= 0x2;
    await handle.write(byte, 0, 1, 16);
  } finally {
    await handle.close();
  }
}

async function bothInfos(args: string[], cwd = dir): Promise<{ ours: string; theirs: string }> {
  const theirs = await qemuImg(['info', ...args], { cwd });
  const ours = await qed(['info', ...args], { cwd });
  assert.equal(theirs.code, 0, describeRun('qemu-img info', theirs));
  assert.equal(ours.code, 0, describeRun('qed info', ours));
  return { ours: ours.stdout, theirs: theirs.stdout };
}

function assertSameJson(ours: string, theirs: string): void {
  const mine = JSON.parse(ours) as unknown;
  const qemu = JSON.parse(theirs) as unknown;
  assert.deepEqual(mine, qemu);
  if (Array.isArray(qemu)) {
    assert.equal((mine as unknown[]).length, qemu.length);
    qemu.forEach((layer, i) => assert.deepEqual(keysOf((mine as unknown[])[i]), keysOf(layer), `key order of layer ${i}`));
  } else {
    assert.deepEqual(keysOf(mine), keysOf(qemu), 'key order');
  }
  assert.equal(ours, theirs, 'the JSON text itself');
}

const IMAGES: Array<[string, string]> = [
  ['plain QED (64 KiB clusters, data and zero clusters)', 'plain.qed'],
  ['plain QED with 4 KiB clusters, table_size 16, size not a cluster multiple', 'small.qed'],
  ['plain QED with 1 MiB clusters', 'big.qed'],
  ['QED over raw (-F raw)', 'over-raw.qed'],
  ['QED over a raw file whose length is not a sector multiple', 'over-odd.qed'],
  ['QED over QED over raw', 'over-qed.qed'],
  ['raw', 'base.raw'],
  ['raw whose length is not a sector multiple', 'odd.raw'],
  ['QED in a subdirectory over ../base.raw', 'sub/up.qed'],
  ['QED in a subdirectory over ../over-raw.qed over raw', 'sub/up-qed.qed'],
  ['QED with an absolute backing name', 'absolute.qed'],
];

describe('qed info --output=json agrees with qemu-img info --output=json', () => {
  for (const [what, image] of IMAGES) {
    test(`same keys, order and values: ${what}`, async () => {
      const { ours, theirs } = await bothInfos(['--output=json', image]);
      assertSameJson(ours, theirs);
    });
    test(`same keys, order and values with --backing-chain: ${what}`, async () => {
      const { ours, theirs } = await bothInfos(['--output=json', '--backing-chain', image]);
      assertSameJson(ours, theirs);
    });
  }

  test('same output for an image named by its absolute path', async () => {
    const { ours, theirs } = await bothInfos(['--output=json', '--backing-chain', join(dir, 'over-qed.qed')], '/');
    assertSameJson(ours, theirs);
  });

  test('same output with -f given explicitly', async () => {
    const { ours, theirs } = await bothInfos(['-f', 'qed', '--output=json', 'over-raw.qed']);
    assertSameJson(ours, theirs);
  });

  test('dirty-flag is false with NEED_CHECK set, as qemu-img reports it', async () => {
    const { ours, theirs } = await bothInfos(['--output=json', 'dirty.qed']);
    assert.equal((JSON.parse(theirs) as { 'dirty-flag': boolean })['dirty-flag'], false);
    assertSameJson(ours, theirs);
  });
});

describe('qed info (human output) agrees with qemu-img info', () => {
  for (const [what, image] of IMAGES) {
    test(`same text: ${what}`, async () => {
      const { ours, theirs } = await bothInfos([image]);
      assert.equal(ours, theirs);
    });
    test(`same text with --backing-chain: ${what}`, async () => {
      const { ours, theirs } = await bothInfos(['--backing-chain', image]);
      assert.equal(ours, theirs);
    });
  }

  test('same text for an image with NEED_CHECK set', async () => {
    const { ours, theirs } = await bothInfos(['dirty.qed']);
    assert.equal(ours, theirs);
  });

  test('a chain of 1 GiB sizes and KiB disk sizes prints the same units', async () => {
    const { ours, theirs } = await bothInfos(['--backing-chain', 'plain.qed']);
    assert.match(theirs, /virtual size: 1 GiB \(1073741824 bytes\)/);
    assert.equal(ours, theirs);
  });
});
