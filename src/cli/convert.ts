// qed convert [-p] [-U] [-f FMT] [-O FMT] [-o OPTIONS] [-B BACKING [-F FMT]] [-S SIZE] [-n] SRC DST
import type { Command } from 'commander';
import type { RunCommand } from './report.js';
import { UsageError, printable } from '../base/errors.js';
import { imageArgument } from './image-spec.js';
import { currentPersona, errorPrefix } from './persona.js';
import { strerror } from './strerror.js';
import { convertImage } from '../ops/convert.js';
import { parseFormat, parseKeyValues } from './options.js';
import { startProgress } from './progress.js';
import { parseSize } from './sizes.js';

export function registerConvert(program: Command, run: RunCommand): void {
  program.command('convert')
    .description('copy an image into a new raw or QED image, sparse, optionally over a backing file')
    .usage('[-p] [-q] [-U] [--salvage] [-f FMT] [-O FMT] [-o OPTIONS] [-B BACKING [-F FMT]] [-S SIZE] [-n] SRC DST')
    .option('-p, --progress', 'show a progress bar (on a terminal)')
    .option('-f, --format <fmt>', 'source format (probed when not given)')
    .option('-O, --output-format <fmt>', 'target format: raw (default) or qed')
    .option('-o, --options <opts>', 'cluster_size=N,table_size=N,backing_file=F,backing_fmt=FMT', (v: string, p: string[]) => [...p, v], [])
    .option('-B, --backing <file>', 'backing file of the target: only what differs from it is written')
    .option('-F, --backing-format <fmt>', 'format of the -B backing file')
    .option('-S, --sparse-size <size>', 'zero runs at least this long are not written (0: write everything)', '4k')
    .option('-n, --no-create', 'the target exists; do not create it')
    .option('-m, --in-flight <n>', 'requests in flight at once', '8')
    .option('--salvage', 'copy what cannot be read as zeros, with a warning, instead of stopping')
    .option('-q, --quiet', 'print no warnings')
    .option('-U, --force-share', 'read the source even if another process is writing it (what is read may be inconsistent)')
    .argument('<src>')
    .argument('<dst>')
    .addHelpText('after', '\nExample:\n  qed convert -p -O qed -o cluster_size=64k disk.raw disk.qed')
    .action((src: string, dst: string, flags: {
      progress?: boolean; format?: string; outputFormat?: string; options: string[]; backing?: string;
      backingFormat?: string; sparseSize: string; create: boolean; inFlight: string; forceShare?: boolean; salvage?: boolean; quiet?: boolean;
    }) => run('convert', dst, async () => {
      const source = imageArgument(src, false, parseFormat(flags.format));
      const target = imageArgument(dst, false, parseFormat(flags.outputFormat));
      const opts = parseKeyValues(flags.options.join(','), ['cluster_size', 'table_size', 'backing_file', 'backing_fmt']);
      const inFlight = Number(flags.inFlight);
      if (!Number.isInteger(inFlight) || inFlight < 1 || inFlight > 1024) throw new UsageError(`invalid --in-flight '${flags.inFlight}'`);
      const progress = startProgress(Boolean(flags.progress), 'convert');
      try {
        await convertImage(source.path, target.path, {
          sourceFormat: source.format,
          targetFormat: target.format ?? 'raw',
          clusterSize: opts.has('cluster_size') ? parseSize(opts.get('cluster_size')!, 'cluster_size') : undefined,
          tableSize: opts.has('table_size') ? Number(opts.get('table_size')) : undefined,
          backingFile: flags.backing ?? opts.get('backing_file'),
          backingFormat: parseFormat(flags.backingFormat ?? opts.get('backing_fmt'), 'backing format'),
          sparseSize: parseSize(flags.sparseSize, 'sparse size'),
          noCreate: !flags.create,
          inFlight,
          forceShare: flags.forceShare,
          onProgress: (done, total) => progress.update(done, total),
          salvage: flags.salvage ? (problem) => {
            if (flags.quiet) return;
            const why = currentPersona() === 'qed' && problem.error instanceof Error ? problem.error.message : strerror(problem.error);
            const where = problem.what === 'data' ? 'offset' : 'block status at offset';
            process.stderr.write(`${errorPrefix('convert')}warning: error while reading ${where} ${problem.offset}: ${printable(why)}\n`);
          } : undefined,
        });
      } finally {
        progress.stop();
      }
      return 0;
    }));
}
