// qed create [-f FMT] [-b BACKING [-F FMT]] [-u] [-o OPTIONS] [-q] FILE [SIZE]
import type { Command } from 'commander';
import { QedError, UsageError, printable } from '../base/errors.js';
import { currentPersona } from './persona.js';
import { parseImageName } from './image-spec.js';
import { qemuWording } from './qemu-wording.js';
import { createImage } from '../ops/create.js';
import { parseFormat, parseKeyValues } from './options.js';
import { type RunCommand, writeOut } from './report.js';
import { parseSize } from './sizes.js';

const CREATE_OPTIONS = ['cluster_size', 'table_size', 'backing_file', 'backing_fmt', 'size'] as const;

interface CreateFlags { format?: string; backing?: string; backingFormat?: string; unsafe?: boolean; options?: string[]; quiet?: boolean }

export function registerCreate(program: Command, run: RunCommand): void {
  program.command('create')
    .description('create a new image')
    .usage('[-f FMT] [-b BACKING [-F FMT]] [-u] [-o OPTIONS] [-q] FILE [SIZE]')
    .option('-f, --format <fmt>', 'image format: qed (default) or raw')
    .option('-b, --backing <file>', 'backing file (stored as given; relative to the image\'s directory)')
    .option('-F, --backing-format <fmt>', 'backing file format: qed or raw (raw is never probed)')
    .option('-u, --unsafe', 'do not open the backing file (SIZE is then required)')
    .option('-o, --options <opts>', 'cluster_size=N,table_size=N,backing_file=F,backing_fmt=FMT', collect, [])
    .option('-q, --quiet', 'print nothing on success')
    .argument('<file>')
    .argument('[size]', 'bytes, or with a k, M, G, T suffix; defaults to the backing file\'s size')
    .addHelpText('after', '\nExample:\n  qed create -f qed -o cluster_size=64k base.qed 10G\n  qed create -b base.qed -F qed overlay.qed')
    .action((file: string, size: string | undefined, flags: CreateFlags) => run('create', file, async () => {
      const opts = parseKeyValues((flags.options ?? []).join(','), CREATE_OPTIONS);
      const format = parseFormat(flags.format) ?? 'qed';
      const backingFile = flags.backing ?? opts.get('backing_file');
      const backingFormat = parseFormat(flags.backingFormat ?? opts.get('backing_fmt'), 'backing format');
      const sizeText = size ?? opts.get('size');
      const clusterSize = opts.has('cluster_size') ? parseSize(opts.get('cluster_size')!, 'cluster_size') : undefined;
      const tableSize = opts.has('table_size') ? Number(opts.get('table_size')) : undefined;
      if (tableSize !== undefined && !Number.isInteger(tableSize)) throw new UsageError(`invalid table_size '${opts.get('table_size')}'`);
      const created = await createImage(parseImageName(file).path, {
        format, size: sizeText === undefined ? undefined : parseSize(sizeText), backingFile, backingFormat,
        clusterSize, tableSize, unsafe: flags.unsafe,
      }).catch((err: unknown) => {
        // qemu-img names the new image, then says the backing file is what failed.
        if (currentPersona() !== 'qed' && backingFile !== undefined && err instanceof QedError && err.path !== undefined && err.path !== file) {
          process.stderr.write(`${currentPersona()}: ${printable(file)}: ${printable(qemuWording(err))}\nCould not open backing image.\n`);
          return null;
        }
        throw err;
      });
      if (created === null) return 1;
      if (!flags.quiet) {
        // The size as asked for, before rounding up to whole sectors, as qemu-img prints it.
        const parts = [`Formatting '${file}', fmt=${format}`, `size=${sizeText === undefined ? created.size : parseSize(sizeText)}`];
        if (backingFile) parts.push(`backing_file=${backingFile}`);
        if (backingFile && created.backingFormat) parts.push(`backing_fmt=${created.backingFormat}`);
        if (format === 'qed') parts.push(`cluster_size=${clusterSize ?? 65536}`);
        if (tableSize !== undefined) parts.push(`table_size=${tableSize}`);
        writeOut(parts.join(' ') + '\n');
      }
      return 0;
    }));
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
