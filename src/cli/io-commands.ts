// The qemu-io command language on an open device: read, readv, write, writev, aio_read,
// aio_write, alloc, discard, flush, map, truncate, length. Lines, messages and the stream
// each goes to are qemu-io 7.2's, so scripts (and QEMU's own iotests) can parse either tool.
// The session (io-session.ts) owns opening, closing, aio_flush and the command loop; the
// parsing and printing the commands share are in io-command-kit.ts.
import { QedError } from '../base/errors.js';
import type { BlockDevice } from '../engine/device.js';
import { CHAIN_STATUS_MAX_RUNS, layerRunsFrom } from '../engine/chain-status.js';
import {
  defineCommand, getopt, number, pattern, refuse, report, requestFailed, requestLength, showRead, timed, usage, vectorLength,
  type IoCommand, type IoContext, type Outcome,
} from './io-command-kit.js';
import { cvtstr } from './sizes.js';
import { strerror } from './strerror.js';

/** read and readv: one timed read of the whole range, then the pattern check, hexdump and stats line. */
async function readAndShow(ctx: IoContext, verb: string, flags: Map<string, string>, offset: number, length: number,
  check: { byte: number | undefined; start: number; length: number }): Promise<Outcome> {
  const buf = new Uint8Array(length);
  let seconds: number;
  try {
    seconds = await timed(() => ctx.device.read(buf, offset));
  } catch (err) {
    return requestFailed(ctx, verb, err);
  }
  return showRead(ctx, flags, { buf, offset, seconds }, check);
}

const read = defineCommand({ name: 'read', oneline: 'reads a number of bytes at a specified offset', altname: 'r', argmin: 2, argmax: -1, usage: '[-abCqv] [-P pattern [-s off] [-l len]] off len' }, async (ctx, words, self) => {
  // -p is accepted and ignored, as by qemu-io 7.2 (it once chose pread over bdrv_read).
  const { flags, args } = getopt(ctx, self, words, 'bCl:pP:qs:v');
  if (args.length !== 2) usage(ctx, self);
  if (flags.has('b')) {
    ctx.out('not supported: -b (the VM state area: QED images have none)\n');
    return 'failed';
  }
  const offset = number(ctx, args[0]!);
  const length = requestLength(ctx, args[1]!);
  const patternByte = flags.has('P') ? pattern(ctx, flags.get('P')!) : undefined;
  const patternOffset = flags.has('s') ? number(ctx, flags.get('s')!) : 0;
  if (patternByte === undefined && (flags.has('s') || flags.has('l'))) usage(ctx, self);
  const patternLength = flags.has('l') ? number(ctx, flags.get('l')!) : length - patternOffset;
  if (patternLength < 0 || patternOffset + patternLength > length) {
    ctx.out('pattern verification range exceeds end of read data\n');
    return 'failed';
  }
  return readAndShow(ctx, 'read', flags, offset, length, { byte: patternByte, start: patternOffset, length: patternLength });
});

const readv = defineCommand({ name: 'readv', oneline: 'reads a number of bytes at a specified offset', argmin: 2, argmax: -1, usage: '[-Cqv] [-P pattern] off len [len..]' }, async (ctx, words, self) => {
  const { flags, args } = getopt(ctx, self, words, 'CP:qv');
  if (args.length < 2) usage(ctx, self);
  const patternByte = flags.has('P') ? pattern(ctx, flags.get('P')!) : undefined;
  const offset = number(ctx, args[0]!);
  const length = vectorLength(ctx, args.slice(1));
  return readAndShow(ctx, 'readv', flags, offset, length, { byte: patternByte, start: 0, length });
});

const write = defineCommand({ name: 'write', oneline: 'writes a number of bytes at a specified offset', altname: 'w', argmin: 2, argmax: -1, writes: true, usage: '[-bcCfnquz] [-P pattern | -s source_file] off len' }, async (ctx, words, self) => {
  // -p is accepted and ignored, as by qemu-io 7.2.
  const { flags, args } = getopt(ctx, self, words, 'bcCfnpP:qs:uz');
  if (args.length !== 2) usage(ctx, self);
  const zero = flags.has('z');
  if (flags.has('b') && zero) return refuse(ctx, '-b and -z cannot be specified at the same time');
  if (flags.has('f') && (flags.has('b') || flags.has('c'))) return refuse(ctx, '-f and -b or -c cannot be specified at the same time');
  if (flags.has('n') && !zero) return refuse(ctx, '-n requires -z to be specified');
  if (flags.has('u') && !zero) return refuse(ctx, '-u requires -z to be specified');
  if (Number(zero) + Number(flags.has('P')) + Number(flags.has('s')) > 1) return refuse(ctx, 'Only one of -z, -P, and -s can be specified at the same time');
  for (const [flag, what] of [['b', 'the VM state area: QED images have none'], ['c', 'compressed writes: QED has none'], ['n', 'writes that may not fall back to writing zeros'], ['s', 'writing from a file']] as const) {
    if (flags.has(flag)) return refuse(ctx, `not supported: -${flag} (${what})`);
  }
  const offset = number(ctx, args[0]!);
  const length = requestLength(ctx, args[1]!);
  const fill = flags.has('P') ? pattern(ctx, flags.get('P')!) : 0xcd;
  let seconds: number;
  try {
    seconds = await timed(() => (zero
      ? ctx.device.writeZeroes(offset, length, { mayUnmap: flags.has('u'), fua: flags.has('f') })
      : ctx.device.write(new Uint8Array(length).fill(fill), offset, { fua: flags.has('f') })));
  } catch (err) {
    return requestFailed(ctx, 'write', err);
  }
  if (!flags.has('q')) report(ctx, 'wrote', offset, length, seconds, flags.has('C'));
  return 'ok';
});

const writev = defineCommand({ name: 'writev', oneline: 'writes a number of bytes at a specified offset', argmin: 2, argmax: -1, writes: true, usage: '[-Cfq] [-P pattern] off len [len..]' }, async (ctx, words, self) => {
  const { flags, args } = getopt(ctx, self, words, 'CfqP:');
  if (args.length < 2) usage(ctx, self);
  const fill = flags.has('P') ? pattern(ctx, flags.get('P')!) : 0xcd;
  const offset = number(ctx, args[0]!);
  const length = vectorLength(ctx, args.slice(1));
  let seconds: number;
  try {
    seconds = await timed(() => ctx.device.write(new Uint8Array(length).fill(fill), offset, { fua: flags.has('f') }));
  } catch (err) {
    return requestFailed(ctx, 'writev', err);
  }
  if (!flags.has('q')) report(ctx, 'wrote', offset, length, seconds, flags.has('C'));
  return 'ok';
});

// The aio commands return as soon as the request is issued; its lines are printed when it
// completes, and aio_flush (or the end of the session) waits for all of them. As in qemu-io,
// a failure or a pattern mismatch then does not change the exit code.
const aioRead = defineCommand({ name: 'aio_read', oneline: 'asynchronously reads a number of bytes', argmin: 2, argmax: -1, usage: '[-Ciqv] [-P pattern] off len [len..]' }, async (ctx, words, self) => {
  const { flags, args } = getopt(ctx, self, words, 'CP:iqv');
  const patternByte = flags.has('P') ? pattern(ctx, flags.get('P')!) : undefined;
  if (flags.has('i')) return refuse(ctx, 'not supported: -i (invalid requests for the statistics we do not keep)');
  if (args.length < 2) usage(ctx, self);
  const offset = number(ctx, args[0]!);
  const length = vectorLength(ctx, args.slice(1));
  const buf = new Uint8Array(length);
  const started = performance.now();
  ctx.startAio(ctx.device.read(buf, offset).then(() => {
    showRead(ctx, flags, { buf, offset, seconds: (performance.now() - started) / 1000 }, { byte: patternByte, start: 0, length });
  }, (err: unknown) => { requestFailed(ctx, 'readv', err); }));
  return 'ok';
});

const aioWrite = defineCommand({ name: 'aio_write', oneline: 'asynchronously writes a number of bytes', argmin: 2, argmax: -1, writes: true, usage: '[-Cfiquz] [-P pattern] off len [len..]' }, async (ctx, words, self) => {
  const { flags, args } = getopt(ctx, self, words, 'CfiqP:uz');
  const fill = flags.has('P') ? pattern(ctx, flags.get('P')!) : 0xcd;
  if (flags.has('i')) return refuse(ctx, 'not supported: -i (invalid requests for the statistics we do not keep)');
  if (args.length < 2) usage(ctx, self);
  const zero = flags.has('z');
  if (zero && args.length !== 2) return refuse(ctx, '-z supports only a single length parameter');
  if (flags.has('u') && !zero) return refuse(ctx, '-u requires -z to be specified');
  const offset = number(ctx, args[0]!);
  const length = zero ? number(ctx, args[1]!) : vectorLength(ctx, args.slice(1));
  const started = performance.now();
  const request = zero
    ? ctx.device.writeZeroes(offset, length, { mayUnmap: flags.has('u'), fua: flags.has('f') })
    : ctx.device.write(new Uint8Array(length).fill(fill), offset, { fua: flags.has('f') });
  ctx.startAio(request.then(() => {
    if (!flags.has('q')) report(ctx, 'wrote', offset, length, (performance.now() - started) / 1000, flags.has('C'));
  }, (err: unknown) => { requestFailed(ctx, 'aio_write', err); }));
  return 'ok';
});

const discard = defineCommand({ name: 'discard', oneline: 'discards a number of bytes at a specified offset', altname: 'd', argmin: 2, argmax: -1, writes: true, usage: '[-Cq] off len' }, async (ctx, words, self) => {
  const { flags, args } = getopt(ctx, self, words, 'Cq');
  if (args.length !== 2) usage(ctx, self);
  const offset = number(ctx, args[0]!);
  const length = requestLength(ctx, args[1]!);
  let seconds: number;
  try {
    seconds = await timed(() => ctx.device.discard(offset, length));
  } catch (err) {
    return requestFailed(ctx, 'discard', err);
  }
  if (!flags.has('q')) report(ctx, 'discard', offset, length, seconds, flags.has('C'));
  return 'ok';
});

const flush = defineCommand({ name: 'flush', oneline: 'flush all in-core file state to disk', altname: 'f', argmin: 0, argmax: 0, usage: '' }, async (ctx) => {
  // qemu-io prints nothing for flush, even when it fails; only the exit code tells.
  try {
    await ctx.device.flush();
    return 'ok';
  } catch {
    return 'failed';
  }
});

const truncate = defineCommand({ name: 'truncate', oneline: 'truncates the current file at the given offset', altname: 't', argmin: 1, argmax: 3, writes: true, usage: '[-m prealloc_mode] off' }, async (ctx, words, self) => {
  const { flags, args } = getopt(ctx, self, words, 'm:');
  if (flags.has('m') && flags.get('m') !== 'off') return refuse(ctx, `not supported: preallocation mode '${flags.get('m')}'`);
  const size = number(ctx, args[0] ?? '');
  try {
    await ctx.device.resize(size);
  } catch (err) {
    ctx.report(`${err instanceof QedError ? err.message : strerror(err)}\n`);
    return 'failed';
  }
  return 'ok';
});

const length = defineCommand({ name: 'length', oneline: 'gets the length of the current file', altname: 'l', argmin: 0, argmax: 0, usage: '' }, async (ctx) => {
  ctx.out(`${cvtstr(ctx.device.size)}\n`);
  return 'ok';
});

/**
 * Whether the top layer holds [offset, offset+length), as merged runs yielded as they are
 * found: zero clusters count as allocated, as in QEMU. Asked in steps of at most
 * CHAIN_STATUS_MAX_RUNS runs, so a fragmented image costs memory for one step, not for its
 * size, and an empty one a few requests.
 */
export async function* allocatedRuns(device: BlockDevice, offset: number, length: number): AsyncGenerator<{ start: number; length: number; allocated: boolean }> {
  const end = offset + length;
  let pending: { start: number; length: number; allocated: boolean } | null = null;
  for (let pos = offset; pos < end;) {
    const extents = await layerRunsFrom(device, pos, end, CHAIN_STATUS_MAX_RUNS);
    const last = extents[extents.length - 1];
    if (!last || last.guestOffset + last.length <= pos) throw new Error(`block status at ${pos} reported nothing`);
    for (const e of extents) {
      const allocated = e.kind !== 'unallocated';
      if (pending && pending.allocated === allocated) { pending.length += e.length; continue; }
      if (pending) yield pending;
      pending = { start: e.guestOffset, length: e.length, allocated };
    }
    pos = last.guestOffset + last.length;
  }
  if (pending) yield pending;
}

const alloc = defineCommand({ name: 'alloc', oneline: 'checks if offset is allocated in the file', altname: 'a', argmin: 1, argmax: 2, usage: 'offset [count]' }, async (ctx, args) => {
  const offset = number(ctx, args[0]!);
  // qemu-io's default count is one sector; a range past the end counts only what exists.
  const requested = args.length === 2 ? number(ctx, args[1]!) : 512;
  const count = Math.max(0, Math.min(requested, ctx.device.size - offset));
  let allocated = 0;
  try {
    if (count > 0) for await (const r of allocatedRuns(ctx.device, offset, count)) if (r.allocated) allocated += r.length;
  } catch (err) {
    ctx.out(`is_allocated failed: ${strerror(err)}\n`);
    return 'failed';
  }
  ctx.out(`${allocated}/${count} bytes allocated at offset ${cvtstr(offset)}\n`);
  return 'ok';
});

const map = defineCommand({ name: 'map', oneline: 'prints the allocated areas of a file', argmin: 0, argmax: 0, usage: '' }, async (ctx) => {
  // Each run is printed as soon as the next one begins, as qemu-io prints as it goes.
  try {
    for await (const r of allocatedRuns(ctx.device, 0, ctx.device.size)) {
      ctx.out(`${cvtstr(r.length)} (0x${r.length.toString(16)}) bytes ${r.allocated ? '    allocated' : 'not allocated'} at offset ${cvtstr(r.start)} (0x${r.start.toString(16)})\n`);
    }
  } catch (err) {
    ctx.report(`Failed to get allocation status: ${strerror(err)}\n`);
    return 'failed';
  }
  return 'ok';
});

export const IO_COMMANDS: readonly IoCommand[] = [read, readv, write, writev, aioRead, aioWrite, discard, flush, truncate, length, alloc, map];
