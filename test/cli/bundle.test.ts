// The `qed` bin runs one CommonJS file that scripts/bundle-cli.mjs bundles from the compiled
// modules (start-up: one file to read and compile instead of ~55 ES modules to resolve and
// link), with a V8 code cache made at build time. Every other CLI test runs the bin; these
// check what bundling itself could break: the bin's and the bundle's shape (hashbang, strict
// mode, executable), the cache being one this V8 takes, the paths computed from
// import.meta.url (package.json for --version), the commands' lazy loading, and cli-progress,
// which stays outside the bundle and is loaded from beside it.
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import Module from 'node:module';
import { Script } from 'node:vm';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QED_CLI, qed, run, scratch } from '../support/cli-run.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BUNDLE = join(ROOT, 'dist/src/cli/qed-bundle.cjs');

test('the package\'s bin is the bundle: hashbang, strict mode, executable, and --version reads package.json', async () => {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string; bin: { qed: string } };
  assert.equal(join(ROOT, pkg.bin.qed), QED_CLI);
  assert.ok(statSync(QED_CLI).mode & 0o100, 'the bin is executable');
  assert.ok((await readFile(QED_CLI, 'utf8')).startsWith("#!/usr/bin/env node\n'use strict';\n"), 'the bin: hashbang, then the directive');
  assert.ok((await readFile(BUNDLE, 'utf8')).startsWith("'use strict';\n"), 'the bundle: the directive first, the modules were strict as ES modules');
  const version = await run(QED_CLI, ['--version']);
  assert.equal(version.code, 0, version.stderr);
  assert.equal(version.stdout, `${pkg.version}\n`);
});

/** In a fresh process under `profile`'s V8 flags, as the bin sets them: whether V8 rejects each profile's cache for the bundle. */
async function cacheRejectedUnder(profile: string): Promise<Record<string, boolean>> {
  const probe = `
    const { readFileSync } = require('node:fs');
    const { Script } = require('node:vm');
    const { wrap } = require('node:module');
    const flags = require(${JSON.stringify(join(ROOT, 'dist/src/cli/qed-v8-flags.cjs'))});
    flags.applyProfile(${JSON.stringify(profile)});
    const bundle = ${JSON.stringify(BUNDLE)};
    const out = {};
    for (const p of flags.PROFILES) {
      const cachedData = readFileSync(require('node:path').join(require('node:path').dirname(bundle), flags.cacheFileName(p)));
      out[p] = new Script(wrap(readFileSync(bundle, 'utf8')), { filename: bundle, cachedData }).cachedDataRejected;
    }
    process.stdout.write(JSON.stringify(out));`;
  const r = await run(process.execPath, ['-e', probe]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, boolean>;
}

test('each profile\'s code cache made at build time is one V8 takes under that profile\'s flags, and only there', async () => {
  // The caches differ because the flags do: a bin that set the wrong flags would compile from scratch.
  assert.deepEqual(await cacheRejectedUnder('batch'), { batch: false, loop: true });
  assert.deepEqual(await cacheRejectedUnder('loop'), { batch: true, loop: false });
});

test('request loops (serve, bench) keep V8\'s defaults; every other command runs as a batch job', () => {
  const { profileFor } = Module.createRequire(import.meta.url)(join(ROOT, 'dist/src/cli/qed-v8-flags.cjs')) as { profileFor: (args: string[]) => string };
  assert.equal(profileFor(['convert', '-O', 'qed', 'a.raw', 'a.qed']), 'batch');
  assert.equal(profileFor(['--debug', 'serve', 'a.qed']), 'loop');
  assert.equal(profileFor(['bench', '-c', '10', 'a.qed']), 'loop');
  assert.equal(profileFor(['--backing-root', 'serve', 'info', 'a.qed']), 'batch', 'the value of a global option is no command');
  assert.equal(profileFor(['io', '-c', 'read 0 4k', 'serve']), 'batch');
  assert.equal(profileFor(['--version']), 'batch');
});

test('the bin knows every global option that takes a value, as the CLI declares them', async () => {
  // qed-v8-flags.cjs keeps its own copy of main.ts's list (it runs before the bundle loads): they must not drift.
  const { GLOBAL_OPTIONS_WITH_VALUE } = Module.createRequire(import.meta.url)(join(ROOT, 'dist/src/cli/qed-v8-flags.cjs')) as { GLOBAL_OPTIONS_WITH_VALUE: Set<string> };
  const help = await run(QED_CLI, ['--help']);
  assert.equal(help.code, 0, help.stderr);
  const options = help.stdout.slice(help.stdout.indexOf('Options:'), help.stdout.indexOf('Commands:'));
  const declared = [...options.matchAll(/^ {2}(?:-\w, )?(--[\w-]+) <\w+>/gm)].map((m) => m[1]);
  assert.deepEqual(declared, [...GLOBAL_OPTIONS_WITH_VALUE]);
});

test('a code cache this V8 cannot use, or none, only costs the compile: the bin still runs', async (t) => {
  const dir = await scratch(t);
  await writeFile(join(dir, 'qed.cjs'), readFileSync(QED_CLI));
  await writeFile(join(dir, 'qed-bundle.cjs'), readFileSync(BUNDLE));
  await writeFile(join(dir, 'qed-v8-flags.cjs'), readFileSync(join(ROOT, 'dist/src/cli/qed-v8-flags.cjs')));
  await writeFile(join(dir, 'a.raw'), new Uint8Array(64 * 1024));
  for (const cache of [Buffer.from('not a code cache'), null]) {
    if (cache) await writeFile(join(dir, 'qed-bundle.batch.cache'), cache); else await rm(join(dir, 'qed-bundle.batch.cache'), { force: true });
    // Outside dist the native addon is not found: --no-lock.
    const r = await run(process.execPath, [join(dir, 'qed.cjs'), '--no-lock', 'info', '--output=json', join(dir, 'a.raw')], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { 'virtual-size': number })['virtual-size'], 64 * 1024);
  }
});

/**
 * esbuild wraps every module that some import() reaches in an init function (`__esm`), run
 * the first time the module is imported. A copy of the bundle whose __esm records each
 * module it initialises shows which ones a run evaluated.
 */
async function evaluated(dir: string, args: readonly string[]): Promise<string[]> {
  const helper = 'var __esm = (fn, res, err) => function __init() {\n';
  const text = await readFile(BUNDLE, 'utf8');
  assert.equal(text.split(helper).length, 2, 'esbuild\'s __esm helper is not as this test knows it (esbuild upgraded?)');
  const traced = join(dir, 'traced.cjs');
  await writeFile(traced, text.replace(helper, `${helper}  if (fn) __qed_evaluated.push(Object.keys(fn)[0]);\n`).replace(
    "'use strict';\n",
    "'use strict';\nconst __qed_evaluated = [];\nprocess.on('exit', () => process.stderr.write('EVALUATED ' + JSON.stringify(__qed_evaluated) + '\\n'));\n"));
  // Outside dist the native addon is not found: --no-lock, which this does not need anyway.
  const result = await run(process.execPath, [traced, '--no-lock', ...args], dir);
  assert.equal(result.code, 0, result.stderr);
  const line = /^EVALUATED (.*)$/m.exec(result.stderr);
  assert.ok(line, result.stderr);
  return JSON.parse(line[1]!) as string[];
}

test('in the bundle the commands stay lazy: convert evaluates neither the NBD server nor the other commands', async (t) => {
  const dir = await scratch(t);
  await writeFile(join(dir, 'a.raw'), new Uint8Array(64 * 1024).fill(7));
  const isCommand = (m: string) => /^dist\/src\/cli\/(create|info|io|map|check|convert|compare|resize|more|dd|serve)\.js$/.test(m);

  const all = await evaluated(dir, ['--help']);
  assert.ok(all.includes('dist/src/cli/serve.js') && all.some((m) => m.startsWith('dist/src/nbd/server/')), `help registers every command: ${all.join(' ')}`);

  const convert = await evaluated(dir, ['convert', '-f', 'raw', '-O', 'qed', 'a.raw', 'a.qed']);
  assert.deepEqual(convert.filter(isCommand), ['dist/src/cli/convert.js']);
  assert.deepEqual(convert.filter((m) => m.startsWith('dist/src/nbd/')), []);

  const version = await evaluated(dir, ['--version']);
  assert.deepEqual(version.filter(isCommand), []);
});

// script(1), from Debian's essential bsdutils, gives the command a terminal.
test('convert -p on a terminal draws the bar with cli-progress, loaded from beside the bundle', async (t) => {
  assert.ok(existsSync('/usr/bin/script'), 'script(1) (bsdutils) is needed to give convert -p a terminal');
  const dir = await scratch(t);
  await writeFile(join(dir, 'a.raw'), new Uint8Array(1024 * 1024).fill(7));
  const command = `'${process.execPath}' '${QED_CLI}' convert -p -f raw -O qed a.raw a.qed`;
  const result = await run('/usr/bin/script', ['-qec', command, '/dev/null'], dir);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /convert \[[^\]]*\] 100% \| 1\.0\/1\.0 MiB/);
  assert.equal((await qed(['compare', '-f', 'raw', '-F', 'qed', 'a.raw', 'a.qed'], dir)).code, 0);
});

test('--debug stack traces name functions and classes as the sources do', async (t) => {
  const dir = await scratch(t);
  const r = await qed(['--debug', 'info', join(dir, 'missing.qed')]);
  assert.equal(r.code, 1);
  // Bundling renames a class that refers to itself (NodeFile to _NodeFile) and names that clash
  // (errnoOf2); keepNames gives the functions and classes their own names back. (A frame of an
  // instance method still shows the class as _NodeFile: V8 names the receiver's class from the source.)
  assert.match(r.stderr, /^IoError: could not open/m);
  assert.match(r.stderr, /^ {4}at NodeFile\.open \(.*qed-bundle\.cjs:\d+:\d+\)$/m);
  assert.match(r.stderr, /^ {4}at wrapIoError \(/m);
});
