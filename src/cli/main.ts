#!/usr/bin/env node
// The `qed` command: a qemu-img / qemu-io style tool for QED and raw images. This file and
// its siblings are the only code that writes to stdout/stderr or sets the exit code.
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import type { RunCommand } from './report.js';
import '../io/node-default.js';
import { setLockingByDefault } from '../io/node-file.js';
import { setDefaultBackingPolicy } from '../ops/open.js';
import { UsageError } from '../base/errors.js';
import { MissingArgument, reportError, setDebug } from './report.js';
import { detectPersona } from './persona.js';

type Register = (program: Command, run: RunCommand) => void;

/**
 * Each command's module, imported only when that command runs (or for help, when all are):
 * start-up is what a user waits for on every call, and the NBD server, TLS and the progress
 * bar cost a `convert` nothing it uses. Listed in the order help shows them.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  create: async () => (await import('./create.js')).registerCreate,
  info: async () => (await import('./info.js')).registerInfo,
  io: async () => (await import('./io.js')).registerIo,
  map: async () => (await import('./map.js')).registerMap,
  check: async () => (await import('./check.js')).registerCheck,
  convert: async () => (await import('./convert.js')).registerConvert,
  compare: async () => (await import('./compare.js')).registerCompare,
  resize: async () => (await import('./resize.js')).registerResize,
  commit: async () => (await import('./more.js')).registerCommit,
  rebase: async () => (await import('./more.js')).registerRebase,
  amend: async () => (await import('./more.js')).registerAmend,
  measure: async () => (await import('./more.js')).registerMeasure,
  bench: async () => (await import('./more.js')).registerBench,
  dd: async () => (await import('./dd.js')).registerDd,
  serve: async () => (await import('./serve.js')).registerServe,
};

/** Global options that take a value in the next argument. */
const GLOBAL_OPTIONS_WITH_VALUE = new Set(['--backing-root']);

/** The command named on the line, or null (help, --version, a typo): then every command is registered. */
function commandNamed(args: readonly string[]): string | null {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (GLOBAL_OPTIONS_WITH_VALUE.has(arg)) { i++; continue; }
    if (arg.startsWith('-')) continue;
    return Object.hasOwn(COMMANDS, arg) ? arg : null;
  }
  return null;
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const run = async (name: string, file: string | undefined, job: () => Promise<number>): Promise<void> => {
    try {
      exitCode = await job();
    } catch (err) {
      exitCode = reportError(name, err, file);
      if (err instanceof MissingArgument) {
        process.stderr.write('\n' + (program.commands.find((c) => c.name() === name)?.helpInformation() ?? ''));
      }
    }
  };
  const program = new Command('qed')
    .description('QED and raw disk images: create, inspect, read and write them (a qemu-img / qemu-io work-alike)')
    .version(version())
    .option('--debug', 'print stack traces with errors')
    .option('--no-lock', 'take no image locks and respect none (as QEMU\'s locking=off): only when nothing else can use the images')
    .option('--backing-root <dir>', 'follow backing files only inside DIR (symlinks resolved, no ..): for images from elsewhere')
    .option('--no-backing-files', 'refuse every backing file')
    .showHelpAfterError()
    .exitOverride()
    .hook('preAction', (cmd) => {
      setDebug(Boolean(cmd.opts().debug));
      setLockingByDefault(cmd.opts().lock !== false);
      const { backingRoot, backingFiles } = cmd.opts() as { backingRoot?: string; backingFiles?: boolean };
      if (backingFiles === false && backingRoot !== undefined) throw new UsageError('--backing-root and --no-backing-files are alternatives');
      setDefaultBackingPolicy(backingFiles === false ? { follow: 'none' } : backingRoot !== undefined ? { follow: 'under', root: backingRoot } : { follow: 'any' });
    });
  program.configureOutput({ writeErr: (text) => process.stderr.write(text.startsWith('error:') ? `qed: ${text.slice(7)}` : text) });
  const args = argv.slice(2);
  const named = commandNamed(args);
  const versionOnly = named === null && args.some((a) => a === '-V' || a === '--version');
  const registers = await Promise.all((named ? [named] : versionOnly ? [] : Object.keys(COMMANDS)).map((name) => COMMANDS[name]!()));
  for (const register of registers) register(program, run);
  for (const cmd of program.commands) cmd.exitOverride().showHelpAfterError().configureOutput({
    writeErr: (text) => process.stderr.write(text.startsWith('error:') ? `qed: ${cmd.name()}: ${text.slice(7)}` : text),
  });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 1;
    return reportError('', err);
  }
  return exitCode;
}

/** `qed resize FILE -1G`: a negative size is an argument, not an option (qemu-img accepts it). */
function protectNegativeSizes(argv: string[]): string[] {
  const at = argv.indexOf('resize');
  const last = argv.length - 1;
  if (at < 0 || last <= at || argv.includes('--') || !/^-\d/.test(argv[last]!)) return argv;
  return [...argv.slice(0, last), '--', argv[last]!];
}

/** Installed as qemu-io, `qemu-io ARGS` is `qed io ARGS`; as qemu-img, `qemu-img SUB ARGS` is `qed SUB ARGS`. */
function asPersona(argv: string[]): string[] {
  return detectPersona(argv[1]) === 'qemu-io' ? [argv[0]!, argv[1]!, 'io', ...argv.slice(2)] : argv;
}

main(protectNegativeSizes(asPersona(process.argv))).then((code) => { process.exitCode = code; }, (err: unknown) => {
  process.stderr.write(`qed: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
