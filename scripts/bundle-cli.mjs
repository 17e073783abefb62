// Bundles the compiled CLI (dist/src/cli/main.js, its ~55 modules and commander) into one
// CommonJS file, dist/src/cli/qed-bundle.cjs, which the package's `qed` bin (dist/src/cli/qed.cjs,
// copied from scripts/qed-bin.cjs) runs with a V8 code cache made here (scripts/make-code-cache.cjs).
// Node's ESM loader resolves,
// reads, compiles and links each module separately, ~35 ms of every `qed` call; one CommonJS
// file is read and compiled once. Run by `npm run build` after tsc.
//
// - The bundle sits next to main.js, so the relative paths the modules compute from
//   import.meta.url (../../../package.json for --version, the native addon in io/native.ts)
//   resolve as they did: import.meta.url becomes the bundle's own file URL.
// - The commands main.ts imports with import() stay lazy: esbuild wraps each such module in
//   an init function called only when it is imported (test/cli/bundle.test.ts checks).
// - cli-progress stays outside: progress.ts loads it with createRequire only when a bar is
//   drawn, which esbuild leaves alone, and it resolves from the bundle's directory.
// - Nothing is minified, and keepNames gives back the names joining modules changes (a
//   clash gets a numeric suffix, a class that refers to itself is renamed _Class): stack
//   traces under --debug and error names (QedError sets name from new.target.name) read as
//   the sources do. It costs about 1% of a tiny convert's 46 ms; minifying whitespace would
//   save about 1.5% and leave --debug's line numbers pointing into a few huge lines.
import { build } from 'esbuild';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const outfile = 'dist/src/cli/qed-bundle.cjs';
const bin = 'dist/src/cli/qed.cjs';

await build({
  absWorkingDir: root,
  entryPoints: ['dist/src/cli/main.js'],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  keepNames: true,
  define: { 'import.meta.url': '__qed_bundle_url' },
  // Strict mode first: esbuild's own "use strict" comes after the banner, where it is no directive.
  banner: { js: "'use strict';\nconst __qed_bundle_url = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
});
// main.js's hashbang came along; the bundle is not run directly (the bin compiles it), and V8 compiles it wrapped.
const bundled = new URL(`../${outfile}`, import.meta.url);
writeFileSync(bundled, readFileSync(bundled, 'utf8').replace(/^#!.*\n/, ''));
copyFileSync(new URL('qed-bin.cjs', import.meta.url), new URL(`../${bin}`, import.meta.url));
copyFileSync(new URL('qed-v8-flags.cjs', import.meta.url), new URL('../dist/src/cli/qed-v8-flags.cjs', import.meta.url));
chmodSync(new URL(`../${bin}`, import.meta.url), 0o755);
// The code caches, one per V8 profile: child processes, so that the --help each runs prints nowhere and exits on its own.
for (const profile of ['batch', 'loop']) {
  const made = spawnSync(process.execPath, [fileURLToPath(new URL('make-code-cache.cjs', import.meta.url)), profile], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (made.status !== 0) throw new Error(`making the ${profile} code cache failed (exit ${made.status})`);
}
