// The package root is a deliberate surface: its runtime exports are listed here, every one
// is documented (TypeDoc, warnings as errors) and used by a test under test/api through the
// package root.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as root from '../../src/index.js';
import { run, scratchDir } from '../support/qemu.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

const RUNTIME_EXPORTS = [
  'AbortError', 'ChainError', 'ClosedError', 'FastZeroError', 'FormatError', 'IoError', 'LockedError', 'MAX_REQUEST_BYTES',
  'MemoryStore', 'NeedsCheckError', 'NodeFileStore', 'OutOfRangeError', 'PoisonedError', 'QedError', 'ReadOnlyError',
  'ShutdownError', 'UnsupportedError', 'UsageError', 'amend', 'check', 'commit', 'compare', 'convert', 'createImage',
  'createReadStream', 'createWriteStream', 'info', 'map', 'measure', 'openImage', 'rebase', 'resize', 'serveNbd',
  'setDefaultFileStore', 'writeImageFromStream',
];

test('the package root exports exactly the public API', () => {
  assert.deepEqual(Object.keys(root).sort(), RUNTIME_EXPORTS);
});

test('every exported function is called by a test of the package root', () => {
  const dir = join(REPO, 'test', 'api');
  const sources = readdirSync(dir).filter((f) => f.endsWith('.ts')).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n')
    + readdirSync(join(REPO, 'examples')).map((f) => readFileSync(join(REPO, 'examples', f), 'utf8')).join('\n');
  const functions = RUNTIME_EXPORTS.filter((name) => typeof (root as Record<string, unknown>)[name] === 'function' && !/Error$|Store$/.test(name));
  const unused = functions.filter((name) => !new RegExp(`\\b${name}\\(`).test(sources));
  assert.deepEqual(unused, []);
});

test('the API reference builds with every export documented (TypeDoc, warnings as errors)', async (t) => {
  const out = await scratchDir(t);
  const result = await run(process.execPath, [join(REPO, 'node_modules', 'typedoc', 'bin', 'typedoc'), '--treatWarningsAsErrors', '--out', out], { cwd: REPO });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.ok(readdirSync(out).includes('index.html'));
});
