// qed map [-f FMT] [-U] [--output=human|json] [--start-offset N] [--max-length N] FILE
import type { Command } from 'commander';
import { chainBlockStatus } from '../engine/chain-status.js';
import type { MapEntry } from '../ops/map.js';
import { openDevice } from '../ops/open.js';
import { imageArgument } from './image-spec.js';
import { parseFormat, parseOutput } from './options.js';
import { type RunCommand, writeOut } from './report.js';
import { parseSize } from './sizes.js';

export function registerMap(program: Command, run: RunCommand): void {
  program.command('map')
    .description('show where the data of an image lives, as qemu-img map does')
    .usage('[-f FMT] [-U] [--output=human|json] [--start-offset N] [--max-length N] FILE')
    .option('-f, --format <fmt>', 'image format (probed when not given)')
    .option('--image-opts', 'FILE is an option string: driver=qed,file.filename=PATH')
    .option('--output <kind>', 'human or json', 'human')
    .option('-s, --start-offset <n>', 'first byte to map', '0')
    .option('-l, --max-length <n>', 'bytes to map')
    .option('-U, --force-share', 'open even if another process is writing the image (what is read may be inconsistent)')
    .argument('<file>')
    .addHelpText('after', '\nExample:\n  qed map --output=json overlay.qed')
    .action((file: string, flags: { format?: string; output: string; startOffset: string; maxLength?: string; forceShare?: boolean; imageOpts?: boolean }) => run('map', file, async () => {
      parseOutput(flags.output);
      const image = imageArgument(file, Boolean(flags.imageOpts), parseFormat(flags.format));
      const device = await openDevice(image.path, { format: image.format, readOnly: true, forceShare: flags.forceShare });
      try {
        const start = Math.min(parseSize(flags.startOffset, 'start offset'), device.size);
        const length = Math.min(flags.maxLength === undefined ? Infinity : parseSize(flags.maxLength, 'length'), device.size - start);
        await streamMap(chainBlockStatus(device, start, length), flags.output === 'json');
      } finally {
        await device.close();
      }
      return 0;
    }));
}

/** Printed as the walk goes, a batch of lines at a time: a map of a huge disk never sits in memory. */
async function streamMap(entries: AsyncIterable<MapEntry>, json: boolean): Promise<void> {
  let text = json ? '[' : 'Offset          Length          Mapped to       File\n';
  let first = true;
  for await (const e of entries) {
    if (json) {
      text += `${first ? '' : ',\n'}{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}${e.hostOffset === undefined ? '' : `, "offset": ${e.hostOffset}`}}`;
    } else if (e.data && !e.zero && e.hostOffset !== undefined) {
      text += `${hex16(e.start)}${hex16(e.length)}${hex16(e.hostOffset)}${e.filename ?? ''}\n`;
    }
    first = false;
    if (text.length > 64 * 1024) { writeOut(text); text = ''; }
  }
  writeOut(json ? `${text}]\n` : text);
}

function hex16(n: number): string {
  return (n === 0 ? '0' : `0x${n.toString(16)}`).padEnd(16);
}
