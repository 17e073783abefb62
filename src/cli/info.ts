// qed info [-f FMT] [-U] [--output=human|json] [--backing-chain] FILE
import type { Command } from 'commander';
import { imageInfo, type ImageInfo } from '../ops/info.js';
import { imageArgument } from './image-spec.js';
import { parseFormat, parseOutput } from './options.js';
import { type RunCommand, writeOut } from './report.js';
import { sizeToStr, sizeWithBytes } from './sizes.js';

export function registerInfo(program: Command, run: RunCommand): void {
  program.command('info')
    .description('show image information, as qemu-img info does')
    .usage('[-f FMT] [-U] [--output=human|json] [--backing-chain] FILE')
    .option('-f, --format <fmt>', 'image format (probed when not given)')
    .option('--output <kind>', 'human or json', 'human')
    .option('--image-opts', 'FILE is an option string: driver=qed,file.filename=PATH')
    .option('--backing-chain', 'describe every image of the backing chain')
    .option('-U, --force-share', 'open even if another process is writing the image (what is read may be inconsistent)')
    .argument('<file>')
    .addHelpText('after', '\nExample:\n  qed info --output=json --backing-chain overlay.qed')
    .action((file: string, flags: { format?: string; output: string; backingChain?: boolean; forceShare?: boolean; imageOpts?: boolean }) => run('info', file, async () => {
      parseOutput(flags.output);
      const image = imageArgument(file, Boolean(flags.imageOpts), parseFormat(flags.format));
      const infos = await imageInfo(image.path, { format: image.format, backingChain: flags.backingChain, forceShare: flags.forceShare });
      if (flags.output === 'json') {
        writeOut(JSON.stringify(flags.backingChain ? infos : infos[0], null, 4) + '\n');
      } else {
        writeOut(infos.map(humanInfo).join('\n'));
      }
      return 0;
    }));
}

function humanInfo(info: ImageInfo): string {
  const lines = [
    `image: ${info.filename}`,
    `file format: ${info.format}`,
    `virtual size: ${sizeWithBytes(info['virtual-size'])}`,
    `disk size: ${info['actual-size'] === undefined ? 'unavailable' : sizeToStr(info['actual-size'])}`,
  ];
  if (info['cluster-size'] !== undefined) lines.push(`cluster_size: ${info['cluster-size']}`);
  if (info['backing-filename'] !== undefined) {
    const full = info['full-backing-filename'];
    lines.push(`backing file: ${info['backing-filename']}${full && full !== info['backing-filename'] ? ` (actual path: ${full})` : ''}`);
  }
  if (info['backing-filename-format'] !== undefined) lines.push(`backing file format: ${info['backing-filename-format']}`);
  if (info['dirty-flag']) lines.push('cleanly shut down: no');
  return lines.join('\n') + '\n';
}
