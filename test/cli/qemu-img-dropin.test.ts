// What `qed` took on to stand in for qemu-img in QEMU's iotests: dd, image names given as
// json:{...}, file:PATH or --image-opts, sizes rounded up to whole sectors, compare's
// warning order, rebase writing zeros as data, and, run under the name qemu-img, error lines
// in QEMU's words. qemu-img does the same on its own copy and is the judge.
import assert from 'node:assert/strict';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ImageBuilder } from '../support/image-builder.js';
import { QED_CLI, describeRun, qed, qemuImg, qemuIo, run, scratchDir, succeed } from '../support/qemu.js';

async function imageWithData(dir: string, name: string): Promise<void> {
  await succeed('create', qemuImg(['create', '-q', '-f', 'qed', name, '1M'], { cwd: dir }));
  await succeed('fill', qemuIo(['-f', 'qed', '-c', 'write -P 0x11 0 100k', '-c', 'write -P 0x22 300k 5000', '-c', 'write -z 600k 64k', name], { cwd: dir }));
}

async function sameOutput(dir: string, args: string[]): Promise<void> {
  const theirs = await qemuImg(args, { cwd: dir });
  const ours = await qed(args, { cwd: dir });
  assert.equal(ours.code, theirs.code, `${describeRun('qed', ours)}\n${describeRun('qemu-img', theirs)}`);
  assert.equal(ours.stdout, theirs.stdout, args.join(' '));
}

describe('qed as a drop-in for qemu-img', { concurrency: 2 }, () => {
  it('dd copies the same bytes as qemu-img dd for bs, count and skip, into raw and qed', async (t) => {
    const dir = await scratchDir(t);
    await imageWithData(dir, 'in.qed');
    for (const [i, operands] of [['bs=64k'], ['bs=4k', 'count=30'], ['bs=512', 'skip=100', 'count=1000'], ['skip=5000', 'bs=100'], []].entries()) {
      for (const format of ['raw', 'qed']) {
        const args = ['dd', '-f', 'qed', '-O', format, ...operands, 'if=in.qed'];
        const theirs = await qemuImg([...args, `of=theirs${i}.${format}`], { cwd: dir });
        const ours = await qed([...args, `of=ours${i}.${format}`], { cwd: dir });
        assert.equal(ours.code, theirs.code, describeRun(`qed ${args.join(' ')}`, ours));
        await sameOutput(dir, ['compare', '-f', format, '-F', format, `theirs${i}.${format}`, `ours${i}.${format}`]);
        const size = async (tool: typeof qed, image: string) => JSON.parse((await tool(['info', '--output=json', '-f', format, image], { cwd: dir })).stdout)['virtual-size'];
        assert.equal(await size(qed, `ours${i}.${format}`), await size(qemuImg, `theirs${i}.${format}`), operands.join(' '));
      }
    }
  });

  it('dd skipping past the end makes an empty image and warns, as qemu-img dd does', async (t) => {
    const dir = await scratchDir(t);
    await imageWithData(dir, 'in.qed');
    const r = await qed(['dd', 'bs=1M', 'skip=2', 'if=in.qed', 'of=out.raw'], { cwd: dir });
    assert.equal(r.code, 0, describeRun('qed dd', r));
    assert.match(r.stderr, /in\.qed: cannot skip to specified offset\n$/);
    for (const bad of [['bs=0', 'if=in.qed', 'of=x.raw'], ['if=in.qed'], ['if=in.qed', 'of=x.raw', 'ibs=5'], ['in.qed', 'of=x.raw']]) {
      assert.equal((await qed(['dd', ...bad], { cwd: dir })).code, 1, bad.join(' '));
    }
  });

  it('create rounds a size up to whole sectors and prints it as given, as qemu-img does', async (t) => {
    const dir = await scratchDir(t);
    await sameOutput(dir, ['create', '-f', 'qed', 'a.qed', '1234']);
    const info = JSON.parse((await qed(['info', '--output=json', 'a.qed'], { cwd: dir })).stdout);
    assert.equal(info['virtual-size'], 1536);
  });

  it('json:{...}, file: and --image-opts name an image to info, map and check as plain paths do', async (t) => {
    const dir = await scratchDir(t);
    await imageWithData(dir, 'file:a:b.qed');
    const abs = join(dir, 'a:b.qed');
    for (const args of [
      ['info', `json:{'driver':'qed','file':{'driver':'file','filename':'${abs}'}}`],
      ['info', `json:{"driver":"qed","file":{"driver":"file","filename":"${abs}"}}`],
      ['info', '--image-opts', `driver=qed,file.driver=file,file.filename=${abs}`],
      ['info', `file:${abs}`],
      ['info', 'file:a:b.qed'],
      ['map', '--output=json', 'file:a:b.qed'],
      ['map', '--image-opts', 'driver=qed,file.filename=a:b.qed'],
    ]) await sameOutput(dir, args);
    const refused = await qed(['info', `json:{'driver':'qed','file':{'driver':'blkdebug','image':'x'}}`], { cwd: dir });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /not supported: protocol driver 'blkdebug'/);
    assert.match((await qed(['info', '-f', 'qcow2', 'a:b.qed'], { cwd: dir })).stderr, /unknown format 'qcow2'/);
  });

  it('create with the file: prefix creates the file named after it', async (t) => {
    const dir = await scratchDir(t);
    await sameOutput(dir, ['create', '-f', 'qed', 'file:x:y.qed', '1M']);
    await succeed('info', qed(['info', 'x:y.qed'], { cwd: dir }));
  });

  it('compare warns of a size mismatch only once the common part compared equal, as qemu-img does', async (t) => {
    const dir = await scratchDir(t);
    await imageWithData(dir, 'a.qed');
    await succeed('copy', qemuImg(['convert', '-f', 'qed', '-O', 'qed', 'a.qed', 'b.qed'], { cwd: dir }));
    await succeed('grow', qemuImg(['resize', '-f', 'qed', 'b.qed', '2M'], { cwd: dir }));
    await sameOutput(dir, ['compare', 'a.qed', 'b.qed']);
    await succeed('change', qemuIo(['-f', 'qed', '-c', 'write -P 9 4k 512', 'b.qed'], { cwd: dir }));
    await sameOutput(dir, ['compare', 'a.qed', 'b.qed']);
  });

  it('rebase leaves the same clusters allocated as qemu-img rebase (zeros are written as data)', async (t) => {
    const dir = await scratchDir(t);
    for (const name of ['old.qed', 'new.qed']) await succeed('create', qemuImg(['create', '-q', '-f', 'qed', name, '1M'], { cwd: dir }));
    await succeed('old', qemuIo(['-f', 'qed', '-c', 'write -P 0x11 0 128k', 'old.qed'], { cwd: dir }));
    await succeed('new', qemuIo(['-f', 'qed', '-c', 'write -P 0x22 64k 128k', 'new.qed'], { cwd: dir }));
    for (const top of ['ours.qed', 'theirs.qed']) await succeed('top', qemuImg(['create', '-q', '-f', 'qed', '-b', 'old.qed', '-F', 'qed', top], { cwd: dir }));
    await succeed('qemu-img rebase', qemuImg(['rebase', '-b', 'new.qed', '-F', 'qed', 'theirs.qed'], { cwd: dir }));
    await succeed('qed rebase', qed(['rebase', '-b', 'new.qed', '-F', 'qed', 'ours.qed'], { cwd: dir }));
    const map = async (image: string) => (await qemuIo(['-r', '-f', 'qed', '-c', 'map', image], { cwd: dir })).stdout;
    assert.equal(await map('ours.qed'), await map('theirs.qed'));
  });

  it('run under the name qemu-img, errors are qemu-img\'s lines, word for word', async (t) => {
    const dir = await scratchDir(t);
    await mkdir(join(dir, 'bin'));
    await symlink(QED_CLI, join(dir, 'bin', 'qemu-img'));
    await succeed('loop', qemuImg(['create', '-q', '-f', 'qed', '-u', '-b', 'other.qed', '-F', 'qed', 'loop.qed', '1M'], { cwd: dir }));
    await succeed('loop', qemuImg(['create', '-q', '-f', 'qed', '-u', '-b', 'loop.qed', '-F', 'qed', 'other.qed', '1M'], { cwd: dir }));
    for (const args of [['info', 'missing.qed'], ['info', '--backing-chain', 'loop.qed'], ['create', '-f', 'qed', '-b', 'nothere.qed', 'new.qed']]) {
      const theirs = await qemuImg(args, { cwd: dir });
      const ours = await run(process.execPath, [join(dir, 'bin', 'qemu-img'), ...args], { cwd: dir });
      assert.equal(ours.code, theirs.code, describeRun(`qed as qemu-img ${args.join(' ')}`, ours));
      if (args[1] !== 'missing.qed') assert.equal(ours.stderr, theirs.stderr);
      else assert.match(ours.stderr, /^qemu-img: Could not open 'missing\.qed': No such file or directory\n$/);
    }
  });

  it('commit -b names the backing file relative to the image, keeps the image\'s data, and refuses a name not in the chain', async (t) => {
    const dir = await scratchDir(t);
    const make = async (who: string) => {
      await mkdir(join(dir, who));
      await succeed('base', qemuImg(['create', '-q', '-f', 'qed', `${who}/t.base`, '1M'], { cwd: dir }));
      await succeed('mid', qemuImg(['create', '-q', '-f', 'qed', '-b', 't.base', '-F', 'qed', `${who}/t.mid`], { cwd: dir }));
      await succeed('top', qemuImg(['create', '-q', '-f', 'qed', '-b', 't.mid', '-F', 'qed', `${who}/t.qed`], { cwd: dir }));
      await succeed('data', qemuIo(['-f', 'qed', '-c', 'write -P 7 0 64k', `${who}/t.qed`], { cwd: dir }));
    };
    await make('ours');
    await make('theirs');
    for (const base of ['t.mid', 'WHO/t.mid', `${dir}/WHO/t.mid`]) {
      const theirs = await qemuImg(['commit', '-b', base.replace('WHO', 'theirs'), 'theirs/t.qed'], { cwd: dir });
      const ours = await qed(['commit', '-b', base.replace('WHO', 'ours'), 'ours/t.qed'], { cwd: dir });
      assert.equal(ours.code, theirs.code, `${base}\n${describeRun('qed commit', ours)}`);
      assert.equal(ours.stdout, theirs.stdout, base);
    }
    for (const image of ['t.qed', 't.mid']) await sameOutput(dir, ['compare', `theirs/${image}`, `ours/${image}`]);
    await succeed('still there', qemuIo(['-r', '-f', 'qed', '-c', 'read -P 7 0 64k', 'ours/t.qed'], { cwd: dir }));
    const deeper = await qed(['commit', '-b', 't.base', 'ours/t.qed'], { cwd: dir });
    assert.equal(deeper.code, 1);
    assert.match(deeper.stderr, /not supported: committing into 't\.base'/);
  });

  it('convert --salvage copies unreadable sectors as zeros with a warning each, and goes on; without it the copy fails', async (t) => {
    const dir = await scratchDir(t);
    const cs = 4096;
    const b = new ImageBuilder({ clusterSize: cs, tableSize: 4, imageSize: 16 * cs });
    b.mapData(0, 0x11);
    b.mapData(2, 0x33);
    b.setL2(b.tableOf(0), 1, 0x7fff_0000_0000_0000n);
    await writeFile(join(dir, 'broken.qed'), b.toBytes());
    const plain = await qed(['convert', '-O', 'raw', 'broken.qed', 'plain.raw'], { cwd: dir });
    assert.equal(plain.code, 1);
    const r = await qed(['convert', '--salvage', '-O', 'raw', 'broken.qed', 'saved.raw'], { cwd: dir });
    assert.equal(r.code, 0, describeRun('qed convert --salvage', r));
    assert.match(r.stderr, /^qed: convert: warning: error while reading (block status at )?offset 4096: /m);
    const saved = await readFile(join(dir, 'saved.raw'));
    assert.equal(saved.length, 16 * cs);
    assert.ok(saved.subarray(0, cs).every((x) => x === 0x11));
    assert.ok(saved.subarray(cs, 2 * cs).every((x) => x === 0));
    assert.ok(saved.subarray(2 * cs, 3 * cs).every((x) => x === 0x33));
    const quiet = await qed(['convert', '-q', '--salvage', '-O', 'raw', 'broken.qed', 'quiet.raw'], { cwd: dir });
    assert.equal(quiet.code, 0);
    assert.equal(quiet.stderr, '');
  });
});
