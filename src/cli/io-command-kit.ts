// The parts every qemu-io command is made of: the context it runs in, getopt, qemu-io's
// number and pattern parsing with its messages, the timing and the stats line, and a
// command's definition (a bad argument prints its message and fails the command).
import type { BlockDevice } from '../engine/device.js';
import { hexdump, stats } from './io-report.js';
import { strerror } from './strerror.js';

export interface IoOutput {
  out(text: string): void;
  /** A raw line on stderr, as qemu-io's fprintf(stderr, ...). */
  err(text: string): void;
  /** "<program>: text" on stderr, as QEMU's error_report. */
  report(text: string): void;
  /** Why a request failed, beyond qemu-io's strerror line (printed by qed under its own name only). */
  detail(err: unknown): void;
}

/** What a command may touch: the device and the set of aio requests still in flight. */
export interface IoContext extends IoOutput {
  device: BlockDevice;
  startAio(request: Promise<void>): void;
}

/** A command's outcome: qemu-io's negative return, which makes the exit code 1. */
export type Outcome = 'ok' | 'failed';

export interface IoCommand {
  name: string;
  altname?: string;
  argmin: number;
  /** -1: any number. */
  argmax: number;
  /** The one-line description qemu-io's usage line ends with. */
  oneline: string;
  /** Needs write permission (qemu-io's BLK_PERM_WRITE). */
  writes?: boolean;
  run(ctx: IoContext, args: string[]): Promise<Outcome>;
}

/** qemu-io's BDRV_REQUEST_MAX_BYTES. */
const REQUEST_MAX_BYTES = 2 ** 31 - 512;

/** Thrown for a bad argument after its message is printed: the command fails with no more output. */
class Refused extends Error {}

interface Parsed { flags: Map<string, string>; args: string[] }

/** POSIX getopt over one command's words: `spec` as getopt's ("P:qv"); stops at the first operand. */
export function getopt(ctx: IoContext, command: Spec, words: string[], spec: string): Parsed {
  const flags = new Map<string, string>();
  let i = 0;
  for (; i < words.length; i++) {
    const w = words[i]!;
    if (w === '--') { i++; break; }
    if (!w.startsWith('-') || w === '-') break;
    for (let k = 1; k < w.length; k++) {
      const flag = w[k]!;
      const at = spec.indexOf(flag);
      if (flag === ':' || at < 0) {
        ctx.err(`${command.name}: invalid option -- '${flag}'\n`);
        usage(ctx, command);
      }
      if (spec[at + 1] === ':') {
        const rest = w.slice(k + 1);
        const value = rest !== '' ? rest : words[++i];
        if (value === undefined) {
          ctx.err(`${command.name}: option requires an argument -- '${flag}'\n`);
          usage(ctx, command);
        }
        flags.set(flag, value);
        break;
      }
      flags.set(flag, '');
    }
  }
  return { flags, args: words.slice(i) };
}

export function usage(ctx: IoContext, command: Spec): never {
  ctx.out(`${command.name} ${command.usage} -- ${command.oneline}\n`);
  throw new Refused();
}

/** qemu-io's cvtnum: a size with an optional suffix, printed as qemu-io does when it is not one. */
export function number(ctx: IoContext, text: string): number {
  const m = /^\s*(\d+(?:\.\d*)?|0x[0-9a-f]+)\s*([bkmgtpe]?)$/i.exec(text);
  if (!m || (m[1]!.includes('.') && m[2] === '')) {
    ctx.out(`Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${text}\n`);
    throw new Refused();
  }
  const units = 'bkmgtpe';
  const scale = m[2] === '' ? 1 : 2 ** (10 * Math.max(0, units.indexOf(m[2]!.toLowerCase())));
  const value = (m[1]!.toLowerCase().startsWith('0x') ? parseInt(m[1]!, 16) : parseFloat(m[1]!)) * scale;
  if (!Number.isSafeInteger(Math.floor(value)) || value >= 2 ** 63) {
    ctx.out(`Parsing error: argument too large -- ${text}\n`);
    throw new Refused();
  }
  return Math.floor(value);
}

export function pattern(ctx: IoContext, text: string): number {
  const value = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text, 16) : /^0[0-7]*$/.test(text) ? parseInt(text, 8) : /^\d+$/.test(text) ? parseInt(text, 10) : NaN;
  if (!(value >= 0 && value <= 255)) {
    ctx.out(`${text} is not a valid pattern byte\n`);
    throw new Refused();
  }
  return value;
}

export function requestLength(ctx: IoContext, text: string): number {
  const length = number(ctx, text);
  if (length > REQUEST_MAX_BYTES) {
    ctx.out(`length cannot exceed ${REQUEST_MAX_BYTES}, given ${text}\n`);
    throw new Refused();
  }
  return length;
}

/** The LEN [LEN ...] of the vectored commands, as one buffer: qemu-io checks each and the sum. */
export function vectorLength(ctx: IoContext, texts: string[]): number {
  let total = 0;
  for (const text of texts) {
    const length = number(ctx, text);
    if (length > REQUEST_MAX_BYTES) {
      ctx.out(`Argument '${text}' exceeds maximum size ${REQUEST_MAX_BYTES}\n`);
      throw new Refused();
    }
    if (total > REQUEST_MAX_BYTES - length) {
      ctx.out(`The total number of bytes exceed the maximum size ${REQUEST_MAX_BYTES}\n`);
      throw new Refused();
    }
    total += length;
  }
  return total;
}

export function report(ctx: IoContext, verb: string, offset: number, length: number, seconds: number, parsable: boolean): void {
  ctx.out(stats(verb, offset, length, seconds, parsable));
}

export async function timed(job: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await job();
  return (performance.now() - started) / 1000;
}

/** The part of `buf` that does not hold `byte`: whether [start, start+length) is all that byte. */
export function matches(buf: Uint8Array, byte: number, start: number, length: number): boolean {
  for (let i = start; i < start + length; i++) if (buf[i] !== byte) return false;
  return true;
}

export type Spec = Omit<IoCommand, 'run'> & { usage: string };

export function defineCommand(c: Spec, body: (ctx: IoContext, words: string[], self: Spec) => Promise<Outcome>): IoCommand {
  return {
    ...c,
    run: async (ctx, words) => {
      try {
        return await body(ctx, words, c);
      } catch (err) {
        if (err instanceof Refused) return 'failed';
        throw err;
      }
    },
  };
}

/** qemu-io's "<verb> failed: <strerror>" on stdout, and our own reason where qed speaks for itself. */
export function requestFailed(ctx: IoContext, verb: string, err: unknown): Outcome {
  ctx.out(`${verb} failed: ${strerror(err)}\n`);
  ctx.detail(err);
  return 'failed';
}

export function refuse(ctx: IoContext, message: string): Outcome {
  ctx.out(`${message}\n`);
  return 'failed';
}

/**
 * What read, readv and aio_read print once the data is in: a pattern mismatch over
 * [start, start+length) of the buffer, then (unless -q) a hexdump with -v and the stats line.
 */
export function showRead(ctx: IoContext, flags: Map<string, string>, read: { buf: Uint8Array; offset: number; seconds: number },
  check: { byte: number | undefined; start: number; length: number }): Outcome {
  const { buf, offset, seconds } = read;
  let outcome: Outcome = 'ok';
  if (check.byte !== undefined && !matches(buf, check.byte, check.start, check.length)) {
    ctx.out(`Pattern verification failed at offset ${offset + check.start}, ${check.length} bytes\n`);
    outcome = 'failed';
  }
  if (flags.has('q')) return outcome;
  if (flags.has('v')) ctx.out(hexdump(buf, offset));
  report(ctx, 'read', offset, buf.length, seconds, flags.has('C'));
  return outcome;
}
