// qed commit, rebase, amend, measure, bench: the remaining qemu-img jobs.
import type { Command } from 'commander';
import { UnsupportedError, UsageError } from '../base/errors.js';
import { backingDepthOf } from '../ops/commit-base.js';
import { amendImage } from '../ops/amend.js';
import { benchImage } from '../ops/bench.js';
import { commitImage } from '../ops/commit.js';
import { measureImage } from '../ops/measure.js';
import { rebaseImage } from '../ops/rebase.js';
import { parseFormat, parseKeyValues, parseOutput } from './options.js';
import { startProgress } from './progress.js';
import { MissingArgument, type RunCommand, writeOut } from './report.js';
import { parseSize } from './sizes.js';

export function registerCommit(program: Command, run: RunCommand): void {
  program.command('commit')
    .description("write an overlay's data into its backing file")
    .usage('[-f FMT] [-p] [-d] [-b BASE] [-q] FILE')
    .option('-f, --format <fmt>', 'image format (probed when not given)')
    .option('-p, --progress', 'show a progress bar (on a terminal)')
    .option('-d, --keep', 'do not empty the overlay afterwards')
    .option('-b, --base <file>', 'the backing file to commit into, which must be FILE\'s own (implies -d, as in qemu-img)')
    .option('-q, --quiet', 'print nothing on success')
    .argument('<file>')
    .addHelpText('after', '\nExample:\n  qed commit overlay.qed')
    .action((file: string, flags: { format?: string; progress?: boolean; keep?: boolean; quiet?: boolean; base?: string }) => run('commit', file, async () => {
      if (flags.base !== undefined) {
        const depth = await backingDepthOf(file, flags.base, { format: parseFormat(flags.format) });
        if (depth === null) throw new UsageError(`Did not find '${flags.base}' in the backing chain of '${file}'`);
        if (depth > 1) throw new UnsupportedError(`committing into '${flags.base}', which lies below FILE's backing file (only its own backing file can take the commit)`);
      }
      const progress = startProgress(Boolean(flags.progress), 'commit');
      try {
        // -b implies -d in qemu-img: the image keeps its data.
        await commitImage(file, { format: parseFormat(flags.format), keepOverlay: flags.keep || flags.base !== undefined, onProgress: (d, t) => progress.update(d, t) });
      } finally {
        progress.stop();
      }
      if (!flags.quiet) writeOut('Image committed.\n');
      return 0;
    }));
}

export function registerRebase(program: Command, run: RunCommand): void {
  program.command('rebase')
    .description('change the backing file of an image, keeping what the guest sees (unless -u)')
    .usage('[-f FMT] [-p] [-u] -b NEW [-F FMT] FILE')
    .option('-f, --format <fmt>', 'image format (probed when not given)')
    .option('-p, --progress', 'show a progress bar (on a terminal)')
    .option('-u, --unsafe', 'only change the name in the header')
    .option('-b, --backing <file>', 'the new backing file ("" removes it, flattening the image)')
    .option('-F, --backing-format <fmt>', 'format of the new backing file')
    .argument('<file>')
    .addHelpText('after', '\nExample:\n  qed rebase -b new-base.qed -F qed overlay.qed')
    .action((file: string, flags: { format?: string; progress?: boolean; unsafe?: boolean; backing?: string; backingFormat?: string }) => run('rebase', file, async () => {
      if (flags.backing === undefined) throw new MissingArgument('-b NEW is required (use -b "" to remove the backing file)');
      const progress = startProgress(Boolean(flags.progress), 'rebase');
      try {
        await rebaseImage(file, flags.backing, {
          format: parseFormat(flags.format), backingFormat: parseFormat(flags.backingFormat, 'backing format'),
          unsafe: flags.unsafe, onProgress: (d, t) => progress.update(d, t),
        });
      } finally {
        progress.stop();
      }
      return 0;
    }));
}

export function registerAmend(program: Command, run: RunCommand): void {
  program.command('amend')
    .description('change header options of a QED image (backing_file, backing_fmt)')
    .usage('[-f FMT] -o backing_file=F,backing_fmt=FMT FILE')
    .option('-f, --format <fmt>', 'image format (must be qed)')
    .option('-o, --options <opts>', 'backing_file=F,backing_fmt=FMT', (v: string, p: string[]) => [...p, v], [])
    .argument('<file>')
    .addHelpText('after', '\nExample:\n  qed amend -o backing_file=base.raw,backing_fmt=raw overlay.qed')
    .action((file: string, flags: { format?: string; options: string[] }) => run('amend', file, async () => {
      if (flags.format !== undefined && flags.format !== 'qed') throw new UsageError('amend works on qed images only');
      if (flags.options.length === 0) throw new MissingArgument('-o OPTIONS is required');
      const opts = parseKeyValues(flags.options.join(','), ['backing_file', 'backing_fmt', 'cluster_size', 'table_size', 'size']);
      const other = [...opts.keys()].filter((k) => k !== 'backing_file' && k !== 'backing_fmt');
      await amendImage(file, { backingFile: opts.get('backing_file'), backingFormat: parseFormat(opts.get('backing_fmt'), 'backing format'), other });
      return 0;
    }));
}

export function registerMeasure(program: Command, run: RunCommand): void {
  program.command('measure')
    .description('how much space a new image needs')
    .usage('[-O FMT] [-o OPTIONS] [--output=human|json] (--size SIZE | [-f FMT] [-U] SRC)')
    .option('-f, --format <fmt>', 'source format (probed when not given)')
    .option('-O, --output-format <fmt>', 'target format: raw (default) or qed')
    .option('-o, --options <opts>', 'cluster_size=N,table_size=N', (v: string, p: string[]) => [...p, v], [])
    .option('--size <size>', 'measure a new image of this size')
    .option('-U, --force-share', 'read the source even if another process is writing it (what is read may be inconsistent)')
    .option('--output <kind>', 'human or json', 'human')
    .argument('[src]')
    .addHelpText('after', '\nExample:\n  qed measure -O qed disk.raw')
    .action((src: string | undefined, flags: { format?: string; outputFormat?: string; options: string[]; size?: string; output: string; forceShare?: boolean }) => run('measure', src, async () => {
      parseOutput(flags.output);
      if ((flags.size === undefined) === (src === undefined)) throw new MissingArgument('give either --size SIZE or a source image');
      const opts = parseKeyValues(flags.options.join(','), ['cluster_size', 'table_size']);
      const m = await measureImage({
        size: flags.size === undefined ? undefined : parseSize(flags.size), source: src, sourceFormat: parseFormat(flags.format), forceShare: flags.forceShare,
        targetFormat: parseFormat(flags.outputFormat) ?? 'raw',
        clusterSize: opts.has('cluster_size') ? parseSize(opts.get('cluster_size')!, 'cluster_size') : undefined,
        tableSize: opts.has('table_size') ? Number(opts.get('table_size')) : undefined,
      });
      writeOut(flags.output === 'json' ? JSON.stringify(m, null, 4) + '\n' : `required size: ${m.required}\nfully allocated size: ${m['fully-allocated']}\n`);
      return 0;
    }));
}

export function registerBench(program: Command, run: RunCommand): void {
  program.command('bench')
    .description('time sequential reads or writes through the engine, as qemu-img bench does')
    .usage('[-f FMT] [-w] [-c COUNT] [-d DEPTH] [-s SIZE] [-S STEP] [-o OFFSET] [--pattern N] [--flush-interval N] FILE')
    .option('-f, --format <fmt>', 'image format (probed when not given)')
    .option('-w, --write', 'write instead of read')
    .option('-c, --count <n>', 'number of requests', '75000')
    .option('-d, --depth <n>', 'requests in flight', '64')
    .option('-s, --size <size>', 'bytes per request', '4k')
    .option('-S, --step <size>', 'distance between request offsets (default: the request size)')
    .option('-o, --offset <off>', 'first offset', '0')
    .option('--pattern <n>', 'byte written by -w', '0')
    .option('--flush-interval <n>', 'flush after every N requests', '0')
    .argument('<file>')
    .addHelpText('after', '\nExample:\n  qed bench -w -c 20000 -d 16 -s 64k disk.qed')
    .action((file: string, f: { format?: string; write?: boolean; count: string; depth: string; size: string; step?: string; offset: string; pattern: string; flushInterval: string }) => run('bench', file, async () => {
      const count = Number(f.count);
      const depth = Number(f.depth);
      const bufferSize = parseSize(f.size, 'size');
      const step = f.step === undefined ? bufferSize : parseSize(f.step, 'step');
      const offset = parseSize(f.offset, 'offset');
      const flushInterval = Number(f.flushInterval);
      writeOut(`Sending ${count} ${f.write ? 'write' : 'read'} requests, ${bufferSize} bytes each, ${depth} in parallel (starting at offset ${offset}, step size ${step})\n`);
      if (flushInterval > 0) writeOut(`Sending flush every ${flushInterval} requests\n`);
      const r = await benchImage(file, { format: parseFormat(f.format), write: f.write, count, depth, bufferSize, step, offset, pattern: Number(f.pattern), flushInterval });
      writeOut(`Run completed in ${r.seconds.toFixed(3)} seconds.\n`);
      return 0;
    }));
}
