// `qed measure`. QEMU 7.2 has no measure for QED, so the oracles are: the file `qed convert -O
// qed` writes from the same source ("required" must be its size), the file `qemu-img convert
// -S 0 -O qed` writes from a fully written source, the file `qemu-img create` writes, and a
// formula derived from the format specification:
//
//   fully allocated = header_size·cs + table_size·cs (L1)
//                   + ⌈S / (entries·cs)⌉ · table_size·cs (L2 tables) + ⌈S / cs⌉ · cs (data)
//   with entries = table_size·cs / 8 and S the size rounded up to 512.
// For raw targets it must agree with `qemu-img measure -O raw`.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { KiB, MiB, assertQemuClean, fileSize, noise, ok, parseJson, qed, qemuImg, qemuWrite, scratch, writeRaw } from '../support/cli-run.js';

interface Measured { required: number; 'fully-allocated': number }

function fullyAllocated(size: number, clusterSize: number, tableSize: number): number {
  const s = Math.ceil(size / 512) * 512;
  const entries = (tableSize * clusterSize) / 8;
  return clusterSize + tableSize * clusterSize + Math.ceil(s / (entries * clusterSize)) * tableSize * clusterSize + Math.ceil(s / clusterSize) * clusterSize;
}

async function measure(dir: string, args: readonly string[]): Promise<Measured> {
  const r = await ok(`qed measure ${args.join(' ')}`, qed(['measure', '--output=json', ...args], dir));
  const m = parseJson<Measured>('qed measure', r);
  assert.deepEqual(Object.keys(m), ['required', 'fully-allocated'], 'JSON keys as qemu-img measure prints them');
  return m;
}

/** "required" must be the size of what qed convert writes from the same source with the same options. */
async function assertRequiredIsConvertSize(dir: string, source: string, options: readonly string[]): Promise<void> {
  const target = `out-${Math.random().toString(36).slice(2)}.qed`;
  const m = await measure(dir, ['-O', 'qed', ...options, source]);
  await ok('qed convert', qed(['convert', '-O', 'qed', ...options, source, target], dir));
  await assertQemuClean(dir, target);
  assert.equal(m.required, await fileSize(join(dir, target)), `required size for ${source} ${options.join(' ')} = size of the file qed convert writes`);
}

describe('qed measure', { concurrency: 2 }, () => {
  it('qemu-img has no measure for QED (exit 1), so qed measure is checked against files the tools write', async (t) => {
    const dir = await scratch(t);
    const r = await qemuImg(['measure', '-O', 'qed', '--size', '1G'], dir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /does not support size measurement/);
  });

  it('required equals the size of the image qed convert writes from a QED overlay over a raw file (default and 4k/table_size 2)', async (t) => {
    const dir = await scratch(t);
    await writeRaw(join(dir, 'base.raw'), noise(MiB, 0x3e));
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', '-b', 'base.raw', '-F', 'raw', 'ov.qed', '3M'], dir));
    await qemuWrite(dir, 'ov.qed', ['write -P 5 128k 4k', 'write -z 512k 64k', 'write -P 6 1500k 100k', 'write -P 7 2900k 4k']);
    await assertRequiredIsConvertSize(dir, 'ov.qed', []);
    await assertRequiredIsConvertSize(dir, 'ov.qed', ['-o', 'cluster_size=4k,table_size=2']);
  });

  it('required equals the size of the image qed convert writes from a sparse 2 MiB raw file', async (t) => {
    const dir = await scratch(t);
    await writeRaw(join(dir, 'src.raw'), new Uint8Array(0), 2 * MiB);
    await qemuWrite(dir, 'src.raw', ['write -P 7 0 64k', 'write -P 8 1M 4k', 'write -P 9 1900k 100k'], 'raw');
    await assertRequiredIsConvertSize(dir, 'src.raw', []);
  });

  it('required equals the size of the image qed convert writes from a QED image holding written zeros', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'z.qed', '2M'], dir));
    await qemuWrite(dir, 'z.qed', ['write -P 0 0 128k', 'write -P 3 1M 4k']);
    await assertRequiredIsConvertSize(dir, 'z.qed', []);
  });

  it('for a fully written source, required = fully allocated = the formula = the file qemu-img convert -S 0 writes', async (t) => {
    const dir = await scratch(t);
    await writeRaw(join(dir, 'full.raw'), noise(2 * MiB + 3 * KiB, 0xf0));
    for (const [options, cs, ts] of [[[], 64 * KiB, 4], [['-o', 'cluster_size=4k,table_size=2'], 4 * KiB, 2], [['-o', 'cluster_size=4k,table_size=1'], 4 * KiB, 1]] as const) {
      const m = await measure(dir, ['-O', 'qed', ...options, 'full.raw']);
      const formula = fullyAllocated(2 * MiB + 3 * KiB, cs, ts);
      assert.equal(m['fully-allocated'], formula, `fully allocated, ${options.join(' ')}`);
      assert.equal(m.required, formula, 'every cluster holds data');
      await ok('qed convert', qed(['convert', '-O', 'qed', ...options, 'full.raw', `d${cs}-${ts}.qed`], dir));
      assert.equal(await fileSize(join(dir, `d${cs}-${ts}.qed`)), formula, 'qed convert writes that many bytes');
      if (ts > 1) { // QEMU cannot open table_size=1 images, so it cannot write one either.
        await ok('qemu-img convert', qemuImg(['convert', '-S', '0', '-O', 'qed', ...options, 'full.raw', `q${cs}-${ts}.qed`], dir));
        assert.equal(await fileSize(join(dir, `q${cs}-${ts}.qed`)), formula, 'qemu-img convert -S 0 writes that many bytes');
        await assertQemuClean(dir, `d${cs}-${ts}.qed`);
      }
    }
  });

  it('--size: required is the empty image qemu-img create writes, fully allocated follows the formula', async (t) => {
    const dir = await scratch(t);
    for (const [size, sizeArg, opts, cs, ts] of [
      [2 ** 30, '1G', 'cluster_size=64k,table_size=4', 64 * KiB, 4],
      [2 * MiB, '2M', 'cluster_size=4k,table_size=2', 4 * KiB, 2],
      [1000448, '1000448', 'cluster_size=64k,table_size=16', 64 * KiB, 16],
      [3 * 2 ** 40, '3T', 'cluster_size=1M,table_size=8', MiB, 8],
    ] as const) {
      const m = await measure(dir, ['-O', 'qed', '-o', opts, '--size', sizeArg]);
      const name = `c-${cs}-${ts}.qed`;
      await ok('qemu-img create', qemuImg(['create', '-q', '-f', 'qed', '-o', opts, name, sizeArg], dir));
      assert.equal(m.required, await fileSize(join(dir, name)), `required for --size ${sizeArg} ${opts}`);
      assert.equal(m['fully-allocated'], fullyAllocated(size, cs, ts), `fully allocated for --size ${sizeArg} ${opts}`);
    }
  });

  it('-O raw agrees with qemu-img measure -O raw, human and JSON', async (t) => {
    const dir = await scratch(t);
    await writeRaw(join(dir, 'r.raw'), noise(MiB + 512, 1));
    for (const args of [['-O', 'raw', 'r.raw'], ['-O', 'raw', '--size', '1G'], ['--output=json', '-O', 'raw', 'r.raw'], ['--output=json', '-O', 'raw', '--size', '3M']]) {
      const theirs = await qemuImg(['measure', ...args], dir);
      const mine = await qed(['measure', ...args], dir);
      assert.equal(theirs.code, 0, theirs.stderr);
      assert.equal(mine.code, 0, mine.stderr);
      assert.equal(mine.stdout, theirs.stdout, args.join(' '));
    }
  });
});
