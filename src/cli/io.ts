// qed io [-f FMT] [-r] [-s] [-C] [-U] [-t CACHE] [-i AIO] [-d DISCARD] [--image-opts] [-c CMD ...] [FILE]
// qemu-io's options and command loop: with no -c, commands are read from standard input.
import type { Command } from 'commander';
import type { RunCommand } from './report.js';
import { UnsupportedError, UsageError, printable } from '../base/errors.js';
import { IoSession } from './io-session.js';
import { parseCacheMode, type CacheMode, type IoOpenOptions } from './io-open.js';
import { parseFormat } from './options.js';
import { currentPersona, errorPrefix } from './persona.js';

interface IoFlags {
  format?: string; readOnly?: boolean; forceShare?: boolean; cmd: string[]; snapshot?: boolean; copyOnRead?: boolean;
  nocache?: boolean; cache?: string; aio?: string; nativeAio?: boolean; discard?: string; imageOpts?: boolean;
  misalign?: boolean; trace?: string; object?: string[];
}

export function registerIo(program: Command, run: RunCommand): void {
  program.command('io')
    .description('run qemu-io style commands on an image')
    .usage('[-f FMT] [-r [-U]] [-s] [-C] [-t CACHE] [--image-opts] [-c CMD ...] [FILE]')
    .option('-f, --format <fmt>', 'image format (probed when not given)')
    .option('-r, --read-only', 'open the image read-only')
    .option('-U, --force-share', 'with -r: open even if another process is writing the image (what is read may be inconsistent)')
    .option('-s, --snapshot', 'writes go to a temporary overlay, deleted at exit: the image is not changed')
    .option('-C, --copy-on-read', 'copy data read from the backing chain into the image')
    .option('-t, --cache <mode>', 'writethrough (default: each write durable), writeback, unsafe (flushes dropped)')
    .option('-n, --nocache', 'cache=none (O_DIRECT): not supported')
    .option('-i, --aio <mode>', 'threads (the only one)')
    .option('-k, --native-aio', 'aio=native: not supported')
    .option('-d, --discard <mode>', 'ignore or unmap (the same here: discard never changes what an image holds)')
    .option('--image-opts', 'FILE is an option string: driver=qed,file.filename=PATH')
    .option('-m, --misalign', 'misaligned buffers: not supported')
    .option('-T, --trace <pattern>', 'tracing: not supported')
    .option('--object <def>', 'QEMU objects (secrets, TLS): not supported', (v: string, prev: string[]) => [...prev, v], [])
    .option('-c, --cmd <command>', 'a command (repeatable): read, readv, write, writev, aio_read, aio_write, aio_flush, alloc, discard, flush, map, truncate, length, open, close, quit; none: read commands from standard input', (v: string, prev: string[]) => [...prev, v], [])
    .argument('[file]')
    .addHelpText('after', "\nExample:\n  qed io -c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' -c flush disk.qed")
    .action((file: string | undefined, flags: IoFlags) => run('io', file, async () => {
      if (flags.format !== undefined && flags.imageOpts) throw new UsageError('--image-opts and -f are mutually exclusive');
      for (const [on, what] of [[flags.misalign, '-m (misaligned buffers)'], [flags.trace !== undefined, '-T (tracing)'], [(flags.object ?? []).length > 0, '--object']] as const) {
        if (on) throw new UnsupportedError(what);
      }
      let cache: CacheMode = flags.nocache ? 'none' : 'writethrough';
      if (flags.cache !== undefined) {
        const parsed = parseCacheMode(flags.cache);
        if (parsed === undefined) throw new UsageError(`Invalid cache option: ${flags.cache}`);
        cache = parsed === 'writeback' && flags.nocache ? 'none' : parsed;
      }
      const options: IoOpenOptions = {
        format: parseFormat(flags.format), readOnly: Boolean(flags.readOnly), forceShare: flags.forceShare, snapshot: flags.snapshot,
        copyOnRead: flags.copyOnRead, cache, aio: flags.nativeAio ? 'native' : flags.aio, discard: flags.discard, extra: [],
      };
      const session = new IoSession({
        out: (t) => process.stdout.write(t),
        err: (t) => process.stderr.write(t),
        report: (t) => process.stderr.write(`${errorPrefix('io')}${t}`),
        detail: (err) => {
          if (currentPersona() === 'qed') process.stderr.write(`${errorPrefix('io')}${printable(err instanceof Error ? err.message : String(err))}\n`);
        },
      }, Boolean(flags.imageOpts));
      if (file !== undefined && !await session.open(file, options)) return 1;
      let ok: boolean;
      try {
        ok = flags.cmd.length > 0 ? await session.runAll(flags.cmd) : await session.runInteractive();
      } finally {
        await session.finish();
      }
      return ok ? 0 : 1;
    }));
}
