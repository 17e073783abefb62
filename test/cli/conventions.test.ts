// What every `qed` command does the same way: --help exits 0 with an example; a wrong flag or
// a missing argument prints the usage and exits 1; a failure is one line on stderr starting
// with "qed: <command>:", with the stack only under --debug; a command that fails validation
// touches no file.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { assertQemuClean, exists, ok, qed, qemuImg, qemuWrite, scratch, sha256 } from '../support/cli-run.js';

const COMMANDS = ['create', 'info', 'io', 'map', 'check', 'convert', 'compare', 'resize', 'commit', 'rebase', 'amend', 'measure', 'bench', 'dd'] as const;

/** Arguments that make each command fail at run time on a missing file (and its expected exit code). */
const FAILING: Record<(typeof COMMANDS)[number], { args: string[]; code: number }> = {
  create: { args: ['create', '-b', 'missing.qed', '-F', 'qed', 'new.qed'], code: 1 },
  info: { args: ['info', 'missing.qed'], code: 1 },
  io: { args: ['io', '-c', 'read 0 512', 'missing.qed'], code: 1 },
  map: { args: ['map', 'missing.qed'], code: 1 },
  check: { args: ['check', 'missing.qed'], code: 1 },
  convert: { args: ['convert', '-O', 'qed', 'missing.qed', 'out.qed'], code: 1 },
  compare: { args: ['compare', 'missing.qed', 'missing.raw'], code: 2 },
  resize: { args: ['resize', 'missing.qed', '+1M'], code: 1 },
  commit: { args: ['commit', 'missing.qed'], code: 1 },
  rebase: { args: ['rebase', '-b', '', 'missing.qed'], code: 1 },
  amend: { args: ['amend', '-o', 'backing_file=x.raw', 'missing.qed'], code: 1 },
  measure: { args: ['measure', '-O', 'qed', 'missing.qed'], code: 1 },
  bench: { args: ['bench', '-c', '1', 'missing.qed'], code: 1 },
  dd: { args: ['dd', 'if=missing.qed', 'of=out.raw'], code: 1 },
};

function assertUsage(what: string, r: { stdout: string; stderr: string; code: number }, command: string): void {
  assert.equal(r.code, 1, `${what}: exit code\n${r.stderr}`);
  assert.equal(r.stdout, '', `${what}: nothing on stdout`);
  assert.match(r.stderr, new RegExp(`^qed: ${command}: [^\\n]+\\n`), `${what}: first line names the command`);
  assert.match(r.stderr, new RegExp(`\\nUsage: qed ${command} `), `${what}: the usage follows`);
}

describe('qed command conventions', { concurrency: 2 }, () => {
  it('qed --help exits 0 and lists every command', async () => {
    const r = await qed(['--help']);
    assert.equal(r.code, 0);
    for (const command of COMMANDS) assert.match(r.stdout, new RegExp(`^  ${command} `, 'm'), command);
  });

  it('every command\'s --help exits 0 and shows an Example', async () => {
    for (const command of COMMANDS) {
      const r = await qed([command, '--help']);
      assert.equal(r.code, 0, command);
      assert.equal(r.stderr, '', command);
      assert.match(r.stdout, new RegExp(`^Usage: qed ${command} `), command);
      assert.match(r.stdout, /\nExample:?\n {2}qed /, `${command} --help shows an example`);
    }
  });

  it('a wrong flag prints the usage and exits 1, for every command', async (t) => {
    const dir = await scratch(t);
    for (const command of COMMANDS) assertUsage(`${command} --no-such-flag`, await qed([command, '--no-such-flag', 'a', 'b'], dir), command);
  });

  it('a missing argument prints the usage and exits 1, for every command', async (t) => {
    const dir = await scratch(t);
    const problems: string[] = [];
    const expectUsage = async (what: string, args: string[]) => {
      const r = await qed(args, dir);
      try { assertUsage(what, r, args[0]!); } catch (err) { problems.push(`${(err as Error).message}\n${r.stderr}`); }
    };
    // io is the exception: as qemu-io, with no image and no -c it reads commands from standard input.
    for (const command of COMMANDS.filter((c) => c !== 'io')) await expectUsage(`${command} without arguments`, [command]);
    await expectUsage('compare with one image', ['compare', 'a.qed']);
    await expectUsage('resize without a size', ['resize', 'a.qed']);
    assert.deepEqual(problems, []);
  });

  it('a missing required option (rebase without -b, amend without -o) prints the usage and exits 1', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'a.qed', '1M'], dir));
    const problems: string[] = [];
    for (const args of [['rebase', 'a.qed'], ['amend', 'a.qed']]) {
      const r = await qed(args, dir);
      try { assertUsage(`qed ${args.join(' ')}`, r, args[0]!); } catch (err) { problems.push(`${(err as Error).message}\n${r.stderr}`); }
    }
    assert.deepEqual(problems, []);
  });

  it('an unknown command prints the usage and exits 1', async () => {
    const r = await qed(['frobnicate']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^qed: [^\n]*frobnicate[^\n]*\n/);
    assert.match(r.stderr, /\nUsage: qed /);
  });

  it('a failure is one line on stderr, "qed: <command>: ...", with no stack trace, for every command', async (t) => {
    const dir = await scratch(t);
    for (const command of COMMANDS) {
      const { args, code } = FAILING[command];
      const r = await qed(args, dir);
      assert.equal(r.code, code, `qed ${args.join(' ')}: exit code\n${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^qed: ${command}: [^\\n]+\\n$`), `qed ${args.join(' ')}: one line`);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  });

  it('--debug adds the stack trace to the error line, before or after the command', async (t) => {
    const dir = await scratch(t);
    for (const args of [['--debug', 'info', 'missing.qed'], ['info', '--debug', 'missing.qed']]) {
      const r = await qed(args, dir);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^qed: info: missing\.qed: [^\n]+\n/);
      assert.match(r.stderr, /\n\s+at /, `qed ${args.join(' ')} prints the stack`);
    }
  });

  it('create that fails validation leaves no file behind, and an existing file untouched', async (t) => {
    const dir = await scratch(t);
    for (const args of [['new.qed', '12Q'], ['-o', 'cluster_size=1000', 'new.qed', '1M'], ['-o', 'table_size=3', 'new.qed', '1M'],
      ['new.qed', '65T'], ['-o', 'bogus=1', 'new.qed', '1M'], ['-b', 'missing.raw', '-F', 'raw', 'new.qed'], ['-f', 'vmdk', 'new.qed', '1M']]) {
      const r = await qed(['create', ...args], dir);
      assert.equal(r.code, 1, `qed create ${args.join(' ')}`);
      assert.match(r.stderr, /^qed: create: [^\n]+\n$/);
      assert.equal(await exists(join(dir, 'new.qed')), false, `qed create ${args.join(' ')} left a file`);
    }
    await ok('create', qed(['create', '-q', 'old.qed', '1M'], dir));
    await assertQemuClean(dir, 'old.qed');
    const digest = await sha256(join(dir, 'old.qed'));
    assert.equal((await qed(['create', 'old.qed', '12Q'], dir)).code, 1);
    assert.equal(await sha256(join(dir, 'old.qed')), digest);
  });

  it('a bad option value is refused before the image is touched (check -r, map/info --output, convert -O, bench counts)', async (t) => {
    const dir = await scratch(t);
    await ok('create', qemuImg(['create', '-q', '-f', 'qed', 'a.qed', '1M'], dir));
    await qemuWrite(dir, 'a.qed', ['write -P 1 0 64k']);
    await copyFile(join(dir, 'a.qed'), join(dir, 'b.qed'));
    const digest = await sha256(join(dir, 'a.qed'));
    for (const args of [['check', '-r', 'everything', 'a.qed'], ['map', '--output=xml', 'a.qed'], ['info', '--output=xml', 'a.qed'],
      ['convert', '-O', 'vmdk', 'a.qed', 'out.img'], ['bench', '-w', '-c', 'many', 'a.qed'], ['resize', 'a.qed', '+lots']]) {
      const r = await qed(args, dir);
      assert.equal(r.code, 1, `qed ${args.join(' ')}`);
      assert.match(r.stderr, new RegExp(`^qed: ${args[0]}: [^\\n]+\\n$`), `qed ${args.join(' ')}`);
      assert.equal(await sha256(join(dir, 'a.qed')), digest, `qed ${args.join(' ')} changed the image`);
    }
    assert.equal(await exists(join(dir, 'out.img')), false);
  });
});
