#!/usr/bin/env node
'use strict';
// The package's `qed` bin (copied to dist/src/cli/qed.cjs by scripts/bundle-cli.mjs): runs the
// bundled CLI, qed-bundle.cjs beside it, under V8 flags chosen by command (qed-v8-flags.cjs)
// and with the V8 code cache made for those flags at build time (qed-bundle.<profile>.cache).
// Compiling the bundle's half megabyte is about a fifth of what Node spends before a command
// starts; the cache lets V8 skip it. A cache this V8 cannot use (another Node
// version, other V8 flags, a rebuilt bundle) is rejected by V8 itself, and the bundle is then
// compiled as usual: the cache only ever saves time.
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');
const { createRequire, wrap } = require('node:module');

const { applyProfile, cacheFileName, profileFor } = require('./qed-v8-flags.cjs');

// V8 flags by command (qed-v8-flags.cjs), set before anything of the bundle is compiled.
const profile = profileFor(process.argv.slice(2));
applyProfile(profile);
const bundle = join(__dirname, 'qed-bundle.cjs');
let cachedData;
try {
  cachedData = readFileSync(join(__dirname, cacheFileName(profile)));
} catch {
  cachedData = undefined; // no cache: compile
}
const script = new Script(wrap(readFileSync(bundle, 'utf8')), { filename: bundle, cachedData });
const bundleModule = { exports: {}, filename: bundle, id: bundle };
script.runInThisContext()(bundleModule.exports, createRequire(bundle), bundleModule, bundle, __dirname);
