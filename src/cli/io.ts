// qed io [-f FMT] [-r [-U]] -c CMD [-c CMD ...] FILE
import type { Command } from 'commander';
import type { RunCommand } from './report.js';
import { UsageError } from '../base/errors.js';
import { openDevice } from '../ops/open.js';
import { runIoCommand } from './io-commands.js';
import { parseFormat } from './options.js';

export function registerIo(program: Command, run: RunCommand): void {
  program.command('io')
    .description('run qemu-io style commands on an image')
    .usage('[-f FMT] [-r [-U]] -c CMD [-c CMD ...] FILE')
    .option('-f, --format <fmt>', 'image format (probed when not given)')
    .option('-r, --read-only', 'open the image read-only')
    .option('-U, --force-share', 'with -r: open even if another process is writing the image (what is read may be inconsistent)')
    .option('-c, --cmd <command>', 'a command: read [-P pat] [-v] OFF LEN, write [-f] [-P pat | -z [-u]] OFF LEN, discard OFF LEN, flush, map, truncate SIZE, length', (v: string, prev: string[]) => [...prev, v], [])
    .argument('<file>')
    .addHelpText('after', "\nExample:\n  qed io -c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' -c flush disk.qed")
    .action((file: string, flags: { format?: string; readOnly?: boolean; forceShare?: boolean; cmd: string[] }) => run('io', file, async () => {
      if (flags.cmd.length === 0) throw new UsageError('no command given: use -c CMD');
      const device = await openDevice(file, { format: parseFormat(flags.format), readOnly: flags.readOnly, forceShare: flags.forceShare });
      let failed = false;
      const io = { out: (t: string) => process.stdout.write(t), err: (t: string) => process.stderr.write(`qed: io: ${file}: ${t}`) };
      try {
        // Like qemu-io, a failing command does not stop the ones after it.
        for (const command of flags.cmd) {
          if (!await runIoCommand(device, command, io)) failed = true;
        }
      } finally {
        await device.close();
      }
      return failed ? 1 : 0;
    }));
}
