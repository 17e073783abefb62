// One qemu-io session: at most one open image, the aio requests in flight, and the commands
// that work on the session rather than the image (open, close, quit, aio_flush, sleep, help).
// Commands come from -c options or, with none, one per line from standard input after
// qemu-io's prompt.
import { createInterface } from 'node:readline';
import { printable } from '../base/errors.js';
import type { BlockDevice } from '../engine/device.js';
import { IO_COMMANDS } from './io-commands.js';
import type { IoCommand, IoContext, IoOutput, Outcome } from './io-command-kit.js';
import { currentPersona } from './persona.js';
import { qemuWording } from './qemu-wording.js';
import { openIoImage, parseCacheMode, type IoOpenOptions, type OpenedImage } from './io-open.js';

/** qemu-io's prompt; its filters strip it, so scripts can drive either tool the same way. */
const PROMPT = 'qemu-io> ';

export class IoSession {
  private image: OpenedImage | null = null;
  private readonly inFlight = new Set<Promise<void>>();
  private quitting = false;

  constructor(private readonly output: IoOutput, private readonly imageOpts: boolean) {}

  /** Open the image named on the command line; false after printing why it could not be opened. */
  async open(name: string | undefined, options: IoOpenOptions): Promise<boolean> {
    if (this.image) {
      this.output.report("file open already, try 'help close'\n");
      return false;
    }
    try {
      this.image = await openIoImage(name, options, this.imageOpts);
      return true;
    } catch (err) {
      if (currentPersona() === 'qed') {
        // qed's own convention: "qed: io: <file>: <what went wrong>".
        this.output.report(`${name === undefined ? '' : `${printable(name)}: `}${printable(err instanceof Error ? err.message : String(err))}\n`);
      } else {
        this.output.report(`can't open${name !== undefined && !this.imageOpts ? ` device ${name}` : ''}: ${qemuWording(err)}\n`);
      }
      return false;
    }
  }

  /** Run each -c command in turn (a failure does not stop the rest); true if none failed. */
  async runAll(commands: readonly string[]): Promise<boolean> {
    let ok = true;
    for (const command of commands) {
      if (this.quitting) break;
      if (await this.run(command) === 'failed') ok = false;
    }
    return ok;
  }

  /** Read commands from standard input, printing the prompt before each, until EOF or quit. */
  async runInteractive(): Promise<boolean> {
    let ok = true;
    const lines = createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
    this.output.out(PROMPT);
    for await (const line of lines) {
      if (await this.run(line) === 'failed') ok = false;
      if (this.quitting) break;
      this.output.out(PROMPT);
    }
    lines.close();
    return ok;
  }

  /** Wait for the aio requests, then close the image (as qemu-io drains before it exits). */
  async finish(): Promise<void> {
    await this.drain();
    await this.closeImage();
  }

  async run(line: string): Promise<Outcome> {
    // qemu-io splits on single spaces only (no quoting); empty words are skipped.
    const words = line.split(' ').filter((w) => w !== '');
    const name = words.shift();
    if (name === undefined) return 'ok';
    const session = SESSION_COMMANDS.find((c) => c.name === name || c.altname === name);
    if (session) {
      if (!this.argumentCountFits(session, name, words)) return 'failed';
      return session.run(this, words);
    }
    const command = IO_COMMANDS.find((c) => c.name === name || c.altname === name);
    if (!command) {
      this.output.err(`command "${name}" not found\n`);
      return 'failed';
    }
    if (!this.image) {
      this.output.err("no file open, try 'help open'\n");
      return 'failed';
    }
    if (!this.argumentCountFits(command, name, words)) return 'failed';
    if (command.writes && this.image.device.readOnly) {
      this.output.report('Block node is read-only\n');
      return 'failed';
    }
    return command.run(this.context(this.image.device), words);
  }

  private context(device: BlockDevice): IoContext {
    return {
      ...this.output,
      device,
      startAio: (request) => {
        const tracked = request.finally(() => this.inFlight.delete(tracked));
        this.inFlight.add(tracked);
      },
    };
  }

  private argumentCountFits(command: { argmin: number; argmax: number }, name: string, words: string[]): boolean {
    const count = words.length;
    if (count >= command.argmin && (command.argmax === -1 || count <= command.argmax)) return true;
    if (command.argmax === -1) this.output.err(`bad argument count ${count} to ${name}, expected at least ${command.argmin} arguments\n`);
    else if (command.argmin === command.argmax) this.output.err(`bad argument count ${count} to ${name}, expected ${command.argmin} arguments\n`);
    else this.output.err(`bad argument count ${count} to ${name}, expected between ${command.argmin} and ${command.argmax} arguments\n`);
    return false;
  }

  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  async closeImage(): Promise<void> {
    const image = this.image;
    this.image = null;
    if (image) await image.close();
  }

  quit(): void {
    this.quitting = true;
  }

  get out(): IoOutput {
    return this.output;
  }

  get isOpen(): boolean {
    return this.image !== null;
  }
}

interface SessionCommand {
  name: string;
  altname?: string;
  argmin: number;
  argmax: number;
  run(session: IoSession, args: string[]): Promise<Outcome>;
}

const SESSION_COMMANDS: readonly SessionCommand[] = [
  { name: 'quit', altname: 'q', argmin: 0, argmax: 0, run: async (s) => { s.quit(); return 'ok'; } },
  {
    name: 'open', altname: 'o', argmin: 1, argmax: -1,
    run: async (s, args) => {
      const parsed = parseOpenCommand(args);
      if ('report' in parsed) { s.out.report(`${parsed.report}\n`); return 'failed'; }
      if ('usage' in parsed) {
        if (parsed.usage !== '') s.out.err(`${parsed.usage}\n`);
        s.out.out('open [-rsCnkU] [-t cache] [-d discard] [-o options] [path] -- open the file specified by path\n');
        return 'failed';
      }
      return await s.open(parsed.name, parsed.options) ? 'ok' : 'failed';
    },
  },
  {
    name: 'close', altname: 'c', argmin: 0, argmax: 0,
    run: async (s) => {
      if (!s.isOpen) { s.out.err("no file open, try 'help open'\n"); return 'failed'; }
      await s.drain();
      await s.closeImage();
      return 'ok';
    },
  },
  { name: 'aio_flush', argmin: 0, argmax: 0, run: async (s) => { await s.drain(); return 'ok'; } },
  {
    name: 'sleep', argmin: 1, argmax: 1,
    run: async (s, [ms]) => {
      if (!/^\d+$/.test(ms!)) { s.out.out(`${ms} is not a valid number\n`); return 'failed'; }
      await new Promise((resolve) => setTimeout(resolve, Number(ms)));
      return 'ok';
    },
  },
  {
    name: 'help', altname: '?', argmin: 0, argmax: 1,
    run: async (s) => {
      const names = [...SESSION_COMMANDS.map((c) => c.name), ...IO_COMMANDS.map((c) => c.name)].sort();
      s.out.out(`${names.join('\n')}\n\nUse 'help commandname' for extended help.\n`);
      return 'ok';
    },
  },
];

/** `open [-rsCnkU] [-t cache] [-d discard] [-o options] [path]`, or what was wrong with it. */
function parseOpenCommand(words: string[]): { name: string | undefined; options: IoOpenOptions } | { usage: string } | { report: string } {
  const options: IoOpenOptions = { readOnly: false, cache: 'writethrough', extra: [] };
  let i = 0;
  for (; i < words.length && words[i]!.startsWith('-'); i++) {
    const w = words[i]!;
    for (let k = 1; k < w.length; k++) {
      const flag = w[k]!;
      if ('tdo'.includes(flag)) {
        const value = w.slice(k + 1) || words[++i];
        if (value === undefined) return { usage: `open: option requires an argument -- '${flag}'` };
        if (flag === 't') {
          const cache = parseCacheMode(value);
          if (cache === undefined) return { report: `Invalid cache option: ${value}` };
          options.cache = cache;
        } else if (flag === 'd') options.discard = value;
        else options.extra.push(value);
        break;
      }
      if (flag === 'r') options.readOnly = true;
      else if (flag === 's') options.snapshot = true;
      else if (flag === 'C') options.copyOnRead = true;
      else if (flag === 'U') options.forceShare = true;
      else if (flag === 'n') options.cache = 'none';
      else if (flag === 'k') options.aio = 'native';
      else return { usage: `open: invalid option -- '${flag}'` };
    }
  }
  const rest = words.slice(i);
  if (rest.length > 1) return { usage: '' };
  return { name: rest[0], options };
}
