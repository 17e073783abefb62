'use strict';
// Writes dist/src/cli/qed-bundle.<profile>.cache, the V8 code cache the bin (scripts/qed-bin.cjs)
// hands to V8 with the bundle under that profile's flags (scripts/qed-v8-flags.cjs). Run by scripts/bundle-cli.mjs in a child process whose output is
// dropped: the bundle runs `--help`, which evaluates every command module, so the functions
// start-up and command registration compile are in the cache, not only the top level.
const { writeFileSync, readFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');
const { createRequire, wrap } = require('node:module');

const dir = join(__dirname, '..', 'dist', 'src', 'cli');
const { applyProfile, cacheFileName, PROFILES } = require(join(dir, 'qed-v8-flags.cjs'));
const profile = process.argv[2];
if (!PROFILES.includes(profile)) throw new Error(`usage: make-code-cache.cjs ${PROFILES.join('|')}`);
// The flags the bin sets for this profile: V8 takes a cache only under the flags it was made with.
applyProfile(profile);
const bundle = join(dir, 'qed-bundle.cjs');
const script = new Script(wrap(readFileSync(bundle, 'utf8')), { filename: bundle });
process.on('exit', () => { writeFileSync(join(dir, cacheFileName(profile)), script.createCachedData()); });
process.argv = [process.argv[0], bundle, '--help'];
const bundleModule = { exports: {}, filename: bundle, id: bundle };
script.runInThisContext()(bundleModule.exports, createRequire(bundle), bundleModule, bundle, dir);
