// qed dd [-f FMT] [-O FMT] [-U] [bs=BYTES] [count=BLOCKS] [skip=BLOCKS] if=INPUT of=OUTPUT
import type { Command } from 'commander';
import { UsageError } from '../base/errors.js';
import { ddImage } from '../ops/dd.js';
import { imageArgument } from './image-spec.js';
import { parseFormat } from './options.js';
import { type RunCommand } from './report.js';
import { errorPrefix } from './persona.js';
import { parseSize } from './sizes.js';

const OPERANDS = ['bs', 'count', 'if', 'of', 'skip'] as const;

export function registerDd(program: Command, run: RunCommand): void {
  program.command('dd')
    .description('copy a byte range of an image into a new image, as dd(1) and qemu-img dd do')
    .usage('[-f FMT] [-O FMT] [-U] [bs=BYTES] [count=BLOCKS] [skip=BLOCKS] if=INPUT of=OUTPUT')
    .option('-f, --format <fmt>', 'input format (probed when not given)')
    .option('-O, --output-format <fmt>', 'output format: raw (default) or qed')
    .option('-U, --force-share', 'read the input even if another process is writing it (what is read may be inconsistent)')
    .argument('<operands...>', 'bs=BYTES (default 512), count=BLOCKS, skip=BLOCKS, if=INPUT, of=OUTPUT')
    .addHelpText('after', '\nExample:\n  qed dd -O qed bs=64k skip=16 count=32 if=disk.qed of=part.qed')
    .action((operands: string[], flags: { format?: string; outputFormat?: string; forceShare?: boolean }) => run('dd', undefined, async () => {
      const given = new Map<string, string>();
      for (const operand of operands) {
        const eq = operand.indexOf('=');
        const key = eq < 0 ? operand : operand.slice(0, eq);
        if (eq < 0 || !(OPERANDS as readonly string[]).includes(key)) throw new UsageError(`unrecognized operand ${operand}`);
        given.set(key, operand.slice(eq + 1));
      }
      const input = given.get('if');
      const output = given.get('of');
      if (input === undefined || output === undefined) throw new UsageError('Must specify both input and output files');
      const blockSize = given.has('bs') ? parseSize(given.get('bs')!, 'bs') : 512;
      if (blockSize < 1 || blockSize > 2 ** 31 - 1) throw new UsageError(`Invalid bs value '${given.get('bs')}': must be from 1 to ${2 ** 31 - 1}`);
      const source = imageArgument(input, false, parseFormat(flags.format));
      const target = imageArgument(output, false, parseFormat(flags.outputFormat));
      const result = await ddImage(source.path, target.path, {
        sourceFormat: source.format, targetFormat: target.format ?? 'raw', blockSize, forceShare: flags.forceShare,
        count: given.has('count') ? parseSize(given.get('count')!, 'count') : undefined,
        skip: given.has('skip') ? parseSize(given.get('skip')!, 'skip') : undefined,
      });
      if (result.skippedPastEnd) process.stderr.write(`${errorPrefix('dd')}${input}: cannot skip to specified offset\n`);
      return 0;
    }));
}
