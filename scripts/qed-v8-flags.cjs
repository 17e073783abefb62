'use strict';
// V8 settings for a `qed` process, chosen by its command before the bundle is compiled (copied
// to dist/src/cli/qed-v8-flags.cjs by scripts/bundle-cli.mjs; used by the bin and by
// scripts/make-code-cache.cjs, which makes one code cache per profile: V8 takes a cache only
// under the flags it was made with).
//
// - 'batch' (convert, compare, check, map, info, io, ...): a process that waits on I/O and
//   ends. V8 marks a function for its optimising compiler (TurboFan) after a small budget of
//   work; a convert then has some 60 functions optimised on the compiler's thread, about
//   0.25 s of processor time that competes for the machine's processors with the writes it
//   waits for. Sixteen times the budget leaves only what is really hot to be optimised
//   (convert of a half-sparse 4 GiB file on tmpfs, 2 processors: user time 0.37 -> 0.18 s,
//   wall 1.26 -> 1.14 s).
// - 'loop' (serve, bench): request loops whose every request runs the same JavaScript; they
//   live long enough for early optimisation to pay (4 KiB reads at depth 1 ran 10% slower
//   under the batch budget), so V8's defaults stay.
// A library's caller keeps whatever its own process uses: this is the CLI's choice only.

const LOOP_COMMANDS = new Set(['serve', 'bench']);
/** V8's default interrupt budget (Node 20) times sixteen. */
const BATCH_FLAGS = ['--interrupt-budget=1081344'];
/** The CLI's global options that take a value (main.ts's GLOBAL_OPTIONS_WITH_VALUE). */
const GLOBAL_OPTIONS_WITH_VALUE = new Set(['--backing-root']);

/** The command word of `qed [global options] COMMAND ...`, or null. */
function commandOf(args) {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (GLOBAL_OPTIONS_WITH_VALUE.has(arg)) { i++; continue; }
    if (arg.startsWith('-')) continue;
    return arg;
  }
  return null;
}

/** 'loop' or 'batch' for the arguments after `qed`. */
function profileFor(args) {
  return LOOP_COMMANDS.has(commandOf(args)) ? 'loop' : 'batch';
}

/** Sets the profile's V8 flags; before the bundle is compiled, so that its functions get them. */
function applyProfile(profile) {
  if (profile === 'batch') require('node:v8').setFlagsFromString(BATCH_FLAGS.join(' '));
}

/** The code cache made under the profile's flags. */
function cacheFileName(profile) {
  return `qed-bundle.${profile}.cache`;
}

module.exports = { profileFor, applyProfile, cacheFileName, PROFILES: ['batch', 'loop'], GLOBAL_OPTIONS_WITH_VALUE };
