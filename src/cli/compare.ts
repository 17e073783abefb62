// qed compare [-f FMT] [-F FMT] [-U] [-s] [-q] A B
import type { Command } from 'commander';
import { compareImages } from '../ops/compare.js';
import { imageArgument } from './image-spec.js';
import { parseFormat } from './options.js';
import { type RunCommand, reportError, writeOut } from './report.js';

/** qemu-img compare: 0 identical, 1 different, 2 error. */
const EXIT_ERROR = 2;

export function registerCompare(program: Command, run: RunCommand): void {
  program.command('compare')
    .description('compare the guest content of two images')
    .usage('[-f FMT] [-F FMT] [-U] [-s] [-q] A B')
    .option('-f, --format <fmt>', 'format of A (probed when not given)')
    .option('-F, --format-b <fmt>', 'format of B (probed when not given)')
    .option('-s, --strict', 'differing sizes or allocation status count as different')
    .option('-q, --quiet', 'print nothing (exit code only)')
    .option('-U, --force-share', 'open even if another process is writing the images (what is read may be inconsistent)')
    .argument('<a>')
    .argument('<b>')
    .addHelpText('after', '\nExit codes: 0 identical, 1 different, 2 error.\n\nExample:\n  qed compare disk.qed disk.raw')
    .action((a: string, b: string, flags: { format?: string; formatB?: string; strict?: boolean; quiet?: boolean; forceShare?: boolean }) => run('compare', undefined, async () => {
      const say = (text: string) => { if (!flags.quiet) writeOut(text); };
      try {
        const imageA = imageArgument(a, false, parseFormat(flags.format));
        const imageB = imageArgument(b, false, parseFormat(flags.formatB));
        const result = await compareImages(imageA.path, imageB.path, { formatA: imageA.format, formatB: imageB.format, strict: flags.strict, forceShare: flags.forceShare });
        if (result.kind === 'size-mismatch') { say('Strict mode: Image size mismatch!\n'); return 1; }
        if (result.kind === 'status-mismatch') { say(`Strict mode: Offset ${result.offset} block status mismatch!\n`); return 1; }
        // As qemu-img, the warning comes only once the common part has compared equal.
        if (result.sizeMismatch && (result.kind === 'identical' || result.beyondShorter)) say('Warning: Image size mismatch!\n');
        if (result.kind === 'content-mismatch') { say(`Content mismatch at offset ${result.offset}!\n`); return 1; }
        say('Images are identical.\n');
        return 0;
      } catch (err) {
        reportError('compare', err);
        return EXIT_ERROR;
      }
    }));
}
