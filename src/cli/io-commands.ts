// The qemu-io style command language of `qed io -c '...'`: read, write, discard, flush, map,
// truncate, length. Output matches qemu-io's lines so scripts can parse either.
import { QedError, UsageError } from '../base/errors.js';
import type { BlockDevice } from '../engine/device.js';
import { cvtstr, parseSize } from './sizes.js';

export interface IoOutput { out(text: string): void; err(text: string): void }

interface Parsed { flags: Map<string, string | true>; args: string[] }

/** getopt over one command's words; `withValue` lists the flags that take an argument. */
function getopt(words: string[], known: string, withValue: string): Parsed {
  const flags = new Map<string, string | true>();
  let i = 0;
  for (; i < words.length; i++) {
    const w = words[i]!;
    if (w === '--') { i++; break; }
    if (!w.startsWith('-') || w.length < 2 || /^-\d/.test(w)) break;
    for (let k = 1; k < w.length; k++) {
      const flag = w[k]!;
      if (!known.includes(flag)) throw new UsageError(`invalid option -- '${flag}'`);
      if (withValue.includes(flag)) {
        const rest = w.slice(k + 1);
        const value = rest !== '' ? rest : words[++i];
        if (value === undefined) throw new UsageError(`option requires an argument -- '${flag}'`);
        flags.set(flag, value);
        break;
      }
      flags.set(flag, true);
    }
  }
  return { flags, args: words.slice(i) };
}

function parsePattern(text: string): number {
  const value = Number(text.startsWith('0x') || text.startsWith('0X') ? parseInt(text, 16) : parseInt(text, 10));
  if (!Number.isInteger(value) || value < 0 || value > 255 || !/^(0x[0-9a-f]+|\d+)$/i.test(text)) {
    throw new UsageError(`invalid pattern '${text}': a byte value such as 0xab`);
  }
  return value;
}

function needArgs(command: string, args: string[], count: number): void {
  if (args.length !== count) throw new UsageError(`bad argument count ${args.length} to ${command}, expected ${count} arguments`);
}

function stats(bytes: number, ops: number, seconds: number): string {
  const t = Math.max(seconds, 1e-9);
  const whole = Math.floor(seconds);
  const time = whole >= 60
    ? `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, '0')}.${String(Math.floor((seconds % 1) * 100)).padStart(2, '0')}`
    : `${String(whole).padStart(2, '0')}.${String(Math.floor((seconds % 1) * 100)).padStart(2, '0')}`;
  return `${cvtstr(bytes)}, ${ops} ops; ${time} sec (${cvtstr(bytes / t)}/sec and ${(ops / t).toFixed(4)} ops/sec)\n`;
}

/** The OFF LEN pair every transfer command takes. */
function offsetAndLength(command: string, args: string[]): { offset: number; length: number } {
  needArgs(command, args, 2);
  return { offset: parseSize(args[0]!, 'offset'), length: parseSize(args[1]!, 'length') };
}

/** qemu-io's two lines after a transfer: "<verb> N/N bytes at offset O" and the rate. */
function reportTransfer(io: IoOutput, verb: string, length: number, offset: number, seconds: number): void {
  io.out(`${verb} ${length}/${length} bytes at offset ${offset}\n`);
  io.out(stats(length, 1, seconds));
}

function hexdump(buf: Uint8Array, offset: number): string {
  let text = '';
  for (let i = 0; i < buf.length; i += 16) {
    const row = buf.subarray(i, i + 16);
    const bytes = [...row].map((b) => b.toString(16).padStart(2, '0') + ' ').join('');
    // qemu-io's print_buffer shows isalnum() characters only.
    const ascii = [...row].map((b) => (isAlnum(b) ? String.fromCharCode(b) : '.')).join('');
    text += `${(offset + i).toString(16).padStart(8, '0')}:  ${bytes} ${ascii}\n`;
  }
  return text;
}

function isAlnum(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
}

/** Run one command line; resolves true on success, false after printing why it failed. */
export async function runIoCommand(device: BlockDevice, line: string, io: IoOutput): Promise<boolean> {
  const words = line.trim().split(/\s+/).filter((w) => w !== '');
  const name = words.shift();
  if (name === undefined) return true;
  try {
    switch (name) {
      case 'read': return await read(device, words, io);
      case 'write': return await write(device, words, io);
      case 'discard': return await discard(device, words, io);
      case 'flush': needArgs('flush', words, 0); await device.flush(); return true;
      case 'truncate': needArgs('truncate', words, 1); await device.resize(parseSize(words[0]!)); return true;
      case 'length': needArgs('length', words, 0); io.out(`${cvtstr(device.size)}\n`); return true;
      case 'map': needArgs('map', words, 0); await map(device, io); return true;
      default: throw new UsageError(`command "${name}" not found`);
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    io.err(err instanceof QedError && err.code === 'USAGE' ? `${name}: ${message}\n` : `${name} failed: ${message}\n`);
    return false;
  }
}

async function read(device: BlockDevice, words: string[], io: IoOutput): Promise<boolean> {
  const { flags, args } = getopt(words, 'Pvq', 'P');
  const { offset, length } = offsetAndLength('read', args);
  const buf = new Uint8Array(length);
  const started = performance.now();
  await device.read(buf, offset);
  const seconds = (performance.now() - started) / 1000;
  let ok = true;
  if (flags.has('P')) {
    const pattern = parsePattern(flags.get('P') as string);
    const bad = buf.findIndex((b) => b !== pattern);
    if (bad >= 0) {
      io.out(`Pattern verification failed at offset ${offset}, ${length} bytes\n`);
      io.err(`read: first mismatch at offset ${offset + bad}: expected 0x${pattern.toString(16)}, found 0x${buf[bad]!.toString(16)}\n`);
      ok = false;
    }
  }
  if (flags.has('q')) return ok;
  if (flags.has('v')) io.out(hexdump(buf, offset));
  reportTransfer(io, 'read', length, offset, seconds);
  return ok;
}

async function write(device: BlockDevice, words: string[], io: IoOutput): Promise<boolean> {
  const { flags, args } = getopt(words, 'Pzufq', 'P');
  const { offset, length } = offsetAndLength('write', args);
  if (flags.has('u') && !flags.has('z')) throw new UsageError('-u requires -z to be specified');
  if (flags.has('z') && flags.has('P')) throw new UsageError('-z and -P cannot be specified at the same time');
  const started = performance.now();
  if (flags.has('z')) {
    await device.writeZeroes(offset, length, { mayUnmap: flags.has('u'), fua: flags.has('f') });
  } else {
    const pattern = flags.has('P') ? parsePattern(flags.get('P') as string) : 0xcd;
    await device.write(new Uint8Array(length).fill(pattern), offset, { fua: flags.has('f') });
  }
  const seconds = (performance.now() - started) / 1000;
  if (!flags.has('q')) reportTransfer(io, 'wrote', length, offset, seconds);
  return true;
}

async function discard(device: BlockDevice, words: string[], io: IoOutput): Promise<boolean> {
  const { flags, args } = getopt(words, 'q', '');
  const { offset, length } = offsetAndLength('discard', args);
  const started = performance.now();
  await device.discard(offset, length);
  const seconds = (performance.now() - started) / 1000;
  if (!flags.has('q')) reportTransfer(io, 'discard', length, offset, seconds);
  return true;
}

/** qemu-io's map: allocation in the top layer only; zero clusters count as allocated. */
async function map(device: BlockDevice, io: IoOutput): Promise<void> {
  const extents = await device.layerStatus(0, device.size);
  const runs: Array<{ start: number; length: number; allocated: boolean }> = [];
  for (const e of extents) {
    const allocated = e.kind !== 'unallocated';
    const last = runs[runs.length - 1];
    if (last && last.allocated === allocated) last.length += e.length;
    else runs.push({ start: e.guestOffset, length: e.length, allocated });
  }
  for (const r of runs) {
    io.out(`${cvtstr(r.length)} (0x${r.length.toString(16)}) bytes ${r.allocated ? '    allocated' : 'not allocated'} at offset ${cvtstr(r.start)} (0x${r.start.toString(16)})\n`);
  }
}
