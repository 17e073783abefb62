// qed resize [-f FMT] [--shrink] [-q] FILE [+|-]SIZE
import type { Command } from 'commander';
import { resizeImage } from '../ops/resize.js';
import { imageArgument } from './image-spec.js';
import { parseFormat } from './options.js';
import { type RunCommand, writeOut } from './report.js';
import { parseSize } from './sizes.js';

export function registerResize(program: Command, run: RunCommand): void {
  program.command('resize')
    .description('grow an image (QED within its L1 capacity; raw files may also shrink with --shrink)')
    .usage('[-f FMT] [--shrink] [-q] FILE [+|-]SIZE')
    .option('-f, --format <fmt>', 'image format (probed when not given)')
    .option('--shrink', 'allow a raw file to shrink')
    .option('-q, --quiet', 'print nothing on success')
    .argument('<file>')
    .argument('<size>', 'new size, or +N / -N relative to the current one')
    .allowUnknownOption(false)
    .addHelpText('after', '\nExample:\n  qed resize disk.qed +10G')
    .action((file: string, size: string, flags: { format?: string; shrink?: boolean; quiet?: boolean }) => run('resize', file, async () => {
      const relative = size.startsWith('+') ? 1 : size.startsWith('-') ? -1 : 0;
      const image = imageArgument(file, false, parseFormat(flags.format));
      await resizeImage(image.path, parseSize(relative === 0 ? size : size.slice(1)), relative, { format: image.format, shrink: flags.shrink });
      if (!flags.quiet) writeOut('Image resized.\n');
      return 0;
    }));
}
