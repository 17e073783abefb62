// qed check [-f FMT] [-U] [-r leaks|all] [--output=human|json] [-q] FILE
import type { Command } from 'commander';
import { UsageError } from '../base/errors.js';
import { FormatHasNoCheck, checkExitCode, checkFile, type CheckReport, type RepairMode } from '../ops/check.js';
import { imageArgument } from './image-spec.js';
import { parseFormat, parseOutput } from './options.js';
import { type RunCommand, reportError, writeOut } from './report.js';

/** qemu-img's exit code when a format has no check. */
const EXIT_CHECK_UNSUPPORTED = 63;

export function registerCheck(program: Command, run: RunCommand): void {
  program.command('check')
    .description('check an image for consistency, and repair it')
    .usage('[-f FMT] [-U] [-r leaks|all] [--output=human|json] [-q] FILE')
    .option('-f, --format <fmt>', 'image format (probed when not given)')
    .option('-r, --repair <mode>', 'leaks: reclaim leaked clusters; all: also fix corruptions')
    .option('--image-opts', 'FILE is an option string: driver=qed,file.filename=PATH')
    .option('--output <kind>', 'human or json', 'human')
    .option('-q, --quiet', 'print nothing (exit code only)')
    .option('-U, --force-share', 'check (without -r) even if another process is writing the image (what is read may be inconsistent)')
    .argument('<file>')
    .addHelpText('after', '\nExit codes: 0 clean, 1 check could not complete, 2 corruptions remain, 3 only leaks remain.\n\nExample:\n  qed check -r all --output=json disk.qed')
    .action((file: string, flags: { format?: string; repair?: string; output: string; quiet?: boolean; forceShare?: boolean; imageOpts?: boolean }) => run('check', file, async () => {
      parseOutput(flags.output);
      if (flags.repair !== undefined && flags.repair !== 'leaks' && flags.repair !== 'all') {
        throw new UsageError(`unknown repair mode '${flags.repair}': use leaks or all`);
      }
      let report: CheckReport;
      try {
        const image = imageArgument(file, Boolean(flags.imageOpts), parseFormat(flags.format));
        report = await checkFile(image.path, { format: image.format, repair: (flags.repair ?? 'none') as RepairMode, forceShare: flags.forceShare });
      } catch (err) {
        if (err instanceof FormatHasNoCheck) { reportError('check', err, file); return EXIT_CHECK_UNSUPPORTED; }
        throw err;
      }
      if (!flags.quiet) writeOut(flags.output === 'json' ? jsonReport(report) : humanReport(report));
      return checkExitCode(report);
    }));
}

function humanReport(r: CheckReport): string {
  let text = '';
  if (r.repaired) {
    text += `The following inconsistencies were found and repaired:\n\n    ${r.leaksFixed} leaked clusters\n    ${r.corruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n`;
  }
  if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) {
    text += 'No errors were found on the image.\n';
  } else {
    if (r.corruptions) text += `\n${r.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`;
    if (r.leaks) text += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
    if (r.checkErrors) text += `\n${r.checkErrors} internal errors have occurred during the check.\n`;
  }
  if (r.totalClusters !== 0 && r.allocatedClusters !== 0) {
    const pct = (n: number, d: number) => (d === 0 ? 0 : (100 * n) / d).toFixed(2);
    text += `${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters, r.totalClusters)}% allocated, ${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, 0.00% compressed clusters\n`;
  }
  if (r.imageEndOffset) text += `Image end offset: ${r.imageEndOffset}\n`;
  return text;
}

/** qemu-img's key order; zero counts are left out, except check-errors. */
function jsonReport(r: CheckReport): string {
  const out: Record<string, unknown> = {};
  const put = (key: string, value: number) => { if (value !== 0) out[key] = value; };
  put('image-end-offset', r.imageEndOffset);
  put('total-clusters', r.totalClusters);
  put('corruptions', r.corruptions);
  put('corruptions-fixed', r.corruptionsFixed);
  out['check-errors'] = r.checkErrors;
  put('leaks', r.leaks);
  put('leaks-fixed', r.leaksFixed);
  put('allocated-clusters', r.allocatedClusters);
  out.filename = r.filename;
  out.format = r.format;
  put('fragmented-clusters', r.fragmentedClusters);
  return JSON.stringify(out, null, 4) + '\n';
}
