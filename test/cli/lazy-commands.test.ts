// The CLI imports a command's module only when that command runs. Whatever is on the line
// before the command (global options, one with a value), the right command must still run,
// help must still list every command, and a misspelt name must still get a suggestion.
import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qed, scratch } from '../support/cli-run.js';

const COMMANDS = ['create', 'info', 'io', 'map', 'check', 'convert', 'compare', 'resize', 'commit', 'rebase', 'amend', 'measure', 'bench', 'dd', 'serve'];

test('help lists every command in order, and --version prints the version alone', async () => {
  const help = await qed(['--help']);
  assert.equal(help.code, 0);
  const listed = [...help.stdout.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]).filter((name) => COMMANDS.includes(name!));
  assert.deepEqual(listed, COMMANDS);
  const version = await qed(['--version']);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
});

test('global options before the command, one taking a value, still reach the right command', async (t) => {
  const dir = await scratch(t);
  const image = join(dir, 'a.qed');
  assert.equal((await qed(['create', '-f', 'qed', image, '1M'])).code, 0);
  const info = await qed(['--no-lock', '--backing-root', dir, '--debug', 'info', image]);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, /file format: qed/);
  const sub = await qed(['--backing-root', dir, 'help', 'map']);
  assert.equal(sub.code, 0, sub.stderr);
  assert.match(sub.stdout, /Usage: qed map/);
});

test('a misspelt command is refused with a suggestion', async () => {
  const r = await qed(['conver', 'a', 'b']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /unknown command 'conver'/);
  assert.match(r.stderr, /Did you mean convert\?/);
});
