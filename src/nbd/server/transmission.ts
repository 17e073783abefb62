// The transmission phase of one connection: requests are read in order, executed in
// parallel and answered as they finish (out of order). Each command: validate → execute →
// map error → encode. Reading stops while too many requests or bytes are in flight, or while
// the client is not reading its replies, so a client costs bounded memory.
import {
  CONTEXT_ALLOCATION_DEPTH, NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_DISC, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES, NBD_EINVAL, NBD_ENOSPC, NBD_EPERM, NBD_ESHUTDOWN, NBD_STATE_HOLE, NBD_STATE_ZERO, nameOfCommand,
} from '../protocol/constants.js';
import {
  REQUEST_BYTES, decodeRequest, encodeBlockStatus, encodeErrorChunk, encodeNone, encodeOffsetDataHeader,
  encodeOffsetHole, encodeSimpleReply, type Request,
} from '../protocol/transmission.js';
import { BufferPool } from './buffer-pool.js';
import { ConnectionClosed } from './byte-reader.js';
import { describeError, nbdErrorOf } from './errors.js';
import type { ConnectionSettings } from './exports.js';
import type { Negotiated } from './handshake.js';

/** Descriptors per BLOCK_STATUS chunk at most (proto.md: SHOULD NOT send more than 2^20). */
export const MAX_STATUS_DESCRIPTORS = 1 << 20;
/** Reads at least this long are answered with hole chunks where the image has no data. */
const SPARSE_READ_MIN_BYTES = 64 * 1024;
/** Stop reading requests while this many reply bytes wait for the client to read them. */
const MAX_UNSENT_REPLY_BYTES = 64 * 1024 * 1024;

/** Flags each command accepts besides FUA (valid on every command: proto.md, Command flags). */
const ALLOWED_FLAGS: Record<number, number> = {
  [NBD_CMD_READ]: NBD_CMD_FLAG_DF,
  [NBD_CMD_WRITE]: 0,
  [NBD_CMD_DISC]: 0,
  [NBD_CMD_FLUSH]: 0,
  [NBD_CMD_TRIM]: 0,
  [NBD_CMD_CACHE]: 0,
  [NBD_CMD_WRITE_ZEROES]: NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
  [NBD_CMD_BLOCK_STATUS]: NBD_CMD_FLAG_REQ_ONE,
};

/** The encoded reply; `pooled` is a read buffer to give back to the pool once the socket took it. */
interface Reply { parts: Uint8Array[]; pooled?: Uint8Array }

class RequestError extends Error {
  constructor(readonly errno: number, message: string) { super(message); }
}

/** Shared by a server and its connections: once stopping, finish what is in flight, answer newcomers ESHUTDOWN, close. */
export class StopSignal {
  stopping = false;
  private resolveStopped!: () => void;
  readonly stopped = new Promise<void>((resolve) => { this.resolveStopped = resolve; });
  private readonly listeners = new Set<() => void>();
  stop(): void {
    this.stopping = true;
    this.resolveStopped();
    for (const listener of [...this.listeners]) listener();
    this.listeners.clear();
  }

  /**
   * Call `listener` once stopping begins; returns a function that forgets it. A wait that
   * subscribes and then forgets leaves nothing behind, where a reaction on `stopped` (as
   * Promise.race adds) stays until the server stops and keeps what it waited for alive: a
   * request header, and with it the socket chunk it came in (64 KiB a request, found by the
   * NBD fuzzer as memory growing with every request ever served).
   */
  onStop(listener: () => void): () => void {
    if (this.stopping) { listener(); return () => undefined; }
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }
}

/** `promise`'s outcome, or null as soon as the server stops; subscribed to the stop only while waiting. */
function untilStopped<T>(control: StopSignal, promise: Promise<T>): Promise<T | null> {
  return new Promise<T | null>((resolve, reject) => {
    const forget = control.onStop(() => resolve(null));
    promise.then((value) => { forget(); resolve(value); }, (err: unknown) => { forget(); reject(err); });
  });
}

export async function serveTransmission(neg: Negotiated, settings: ConnectionSettings, control: StopSignal): Promise<void> {
  const { socket, reader } = neg;
  const device = neg.export.device;
  const maxPayload = device.capabilities.blockSizes.maximum;
  let inFlight = 0;
  let bytesInFlight = 0;
  let slotFreed: (() => void) | null = null;
  const freeSlot = (): void => { const wake = slotFreed; slotFreed = null; wake?.(); };
  const pool = new BufferPool();
  /** Reply parts go out together; `written` runs once the socket has taken all of them. */
  const send = (parts: Uint8Array[], written?: () => void): void => {
    (socket as { cork?: () => void }).cork?.();
    parts.forEach((p, i) => socket.write(p, i === parts.length - 1 && written ? () => written() : undefined));
    (socket as { uncork?: () => void }).uncork?.();
  };
  const unsent = (): number => (socket as { writableLength?: number }).writableLength ?? 0;

  const run = async (request: Request, payload: Uint8Array | null, cost: number): Promise<void> => {
    try {
      const { parts, pooled } = await execute(request, payload);
      send(parts, pooled && (() => pool.give(pooled)));
    } catch (err) {
      const errno = err instanceof RequestError ? err.errno : nbdErrorOf(err);
      if (!(err instanceof RequestError)) settings.log(`${nameOfCommand(request.type)} at ${request.offset}+${request.length} failed: ${describeError(err)}`);
      send([neg.structuredReplies ? encodeErrorChunk(request.handle, errno, describeError(err)) : encodeSimpleReply(request.handle, errno)]);
    } finally {
      inFlight--;
      bytesInFlight -= cost;
      freeSlot();
    }
  };

  const execute = async (request: Request, payload: Uint8Array | null): Promise<Reply> => {
    const { type, flags, handle } = request;
    if (control.stopping) throw new RequestError(NBD_ESHUTDOWN, 'server is shutting down');
    const allowed = ALLOWED_FLAGS[type];
    if (allowed === undefined) throw new RequestError(NBD_EINVAL, `unknown command ${type}`);
    if ((flags & ~(allowed | NBD_CMD_FLAG_FUA)) !== 0) throw new RequestError(NBD_EINVAL, `flags 0x${flags.toString(16)} are not valid on ${nameOfCommand(type)}`);
    if ((flags & NBD_CMD_FLAG_DF) !== 0 && !neg.structuredReplies) throw new RequestError(NBD_EINVAL, 'DF needs structured replies');
    const fua = (flags & NBD_CMD_FLAG_FUA) !== 0;
    const writes = type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES || type === NBD_CMD_TRIM;
    if (writes && settings.readOnly) throw new RequestError(NBD_EPERM, 'export is read-only');
    let end = request.offset + BigInt(request.length);
    // A status query may reach past the end (a 0xffffffff length near the end of a large
    // export): answer for what exists, as qemu-nbd does.
    if (type === NBD_CMD_BLOCK_STATUS && request.offset < BigInt(device.size) && end > BigInt(device.size)) end = BigInt(device.size);
    if (type !== NBD_CMD_FLUSH && end > BigInt(device.size)) {
      throw new RequestError(type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL, 'request reaches past the end of the export');
    }
    const offset = Number(request.offset);
    const length = Number(end - request.offset);
    switch (type) {
      case NBD_CMD_READ: return read(handle, offset, length, (flags & NBD_CMD_FLAG_DF) !== 0);
      case NBD_CMD_WRITE:
        if (payload === null) throw new RequestError(NBD_EINVAL, `write of ${length} bytes is over the ${maxPayload}-byte maximum`);
        await device.write(payload, offset, { fua });
        return ok(handle);
      case NBD_CMD_FLUSH:
        await device.flush();
        return ok(handle);
      case NBD_CMD_TRIM:
        await device.discard(offset, length);
        if (fua) await device.flush();
        return ok(handle);
      case NBD_CMD_CACHE:
        return ok(handle);
      case NBD_CMD_WRITE_ZEROES:
        await device.writeZeroes(offset, length, { fua, noHole: (flags & NBD_CMD_FLAG_NO_HOLE) !== 0, fastZero: (flags & NBD_CMD_FLAG_FAST_ZERO) !== 0 });
        return ok(handle);
      case NBD_CMD_BLOCK_STATUS: return blockStatus(handle, offset, length, (flags & NBD_CMD_FLAG_REQ_ONE) !== 0);
      default: throw new RequestError(NBD_EINVAL, `unknown command ${type}`);
    }
  };

  const ok = (handle: bigint): Reply => ({ parts: [neg.structuredReplies ? encodeNone(handle) : encodeSimpleReply(handle, 0)] });

  const read = async (handle: bigint, offset: number, length: number, dontFragment: boolean): Promise<Reply> => {
    if (length > maxPayload) throw new RequestError(NBD_EINVAL, `read of ${length} bytes is over the ${maxPayload}-byte maximum`);
    if (length === 0) return ok(handle); // no content chunk may be empty: success with nothing
    // Every byte sent is read first and holes are never sent: a reused buffer needs no zeroing.
    const data = pool.take(length);
    // Hole detection pays for itself only on larger reads; small ones go out as one data chunk.
    if (!neg.structuredReplies || dontFragment || length < SPARSE_READ_MIN_BYTES) {
      await (device.readIfData?.(data, offset) ?? device.read(data, offset));
      if (!neg.structuredReplies) return { parts: [encodeSimpleReply(handle, 0), data], pooled: data };
      return { parts: [encodeOffsetDataHeader(handle, true, offset, length), data], pooled: data };
    }
    // Plain data, as the cached tables show it: one chunk, without walking the block status.
    const direct = device.readIfData?.(data, offset);
    if (direct) {
      await direct;
      return { parts: [encodeOffsetDataHeader(handle, true, offset, length), data], pooled: data };
    }
    // Holes (zero clusters, unallocated everywhere) are answered without reading them.
    const runs: Array<{ start: number; length: number; hole: boolean }> = [];
    for await (const e of device.blockStatus(offset, length)) {
      const hole = e.zero && !e.data;
      const last = runs[runs.length - 1];
      if (last && last.hole === hole) last.length += e.length;
      else runs.push({ start: e.start, length: e.length, hole });
    }
    await Promise.all(runs.filter((r) => !r.hole).map((r) => device.read(data.subarray(r.start - offset, r.start - offset + r.length), r.start)));
    const parts: Uint8Array[] = [];
    runs.forEach((r, i) => {
      const done = i === runs.length - 1;
      if (r.hole) parts.push(encodeOffsetHole(handle, done, r.start, r.length));
      else parts.push(encodeOffsetDataHeader(handle, done, r.start, r.length), data.subarray(r.start - offset, r.start - offset + r.length));
    });
    return { parts, pooled: data };
  };

  const blockStatus = async (handle: bigint, offset: number, length: number, onlyOne: boolean): Promise<Reply> => {
    if (!neg.structuredReplies || neg.contexts.size === 0) throw new RequestError(NBD_EINVAL, 'no metadata context was negotiated');
    if (length === 0) throw new RequestError(NBD_EINVAL, 'block status of length 0');
    const perContext = new Map<number, Array<{ length: number; status: number }>>();
    for (const id of neg.contexts.keys()) perContext.set(id, []);
    const limit = onlyOne ? 1 : MAX_STATUS_DESCRIPTORS;
    let full = false;
    for await (const e of device.blockStatus(offset, length)) {
      for (const [id, name] of neg.contexts) {
        const status = name === CONTEXT_ALLOCATION_DEPTH ? (e.present ? e.depth + 1 : 0) : (e.data ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO);
        const list = perContext.get(id)!;
        const last = list[list.length - 1];
        if (last && last.status === status) last.length += e.length;
        else if (list.length < limit) list.push({ length: e.length, status });
        else full = true;
      }
      if (full) break;
    }
    const ids = [...perContext.keys()];
    return { parts: ids.map((id, i) => encodeBlockStatus(handle, i === ids.length - 1, id, perContext.get(id)!)) };
  };

  let pendingHeader: Promise<Uint8Array> | null = null;
  try {
    for (;;) {
      while (!control.stopping && (inFlight >= settings.maxRequestsInFlight || bytesInFlight >= settings.maxBytesInFlight || unsent() > MAX_UNSENT_REPLY_BYTES)) {
        const drained = new Promise<void>((resolve) => {
          slotFreed = resolve;
          if (unsent() > MAX_UNSENT_REPLY_BYTES) socket.once('drain', resolve);
        });
        await untilStopped(control, drained);
      }
      if (control.stopping && inFlight === 0 && (pendingHeader === null || reader.buffered < REQUEST_BYTES)) break;
      if (!pendingHeader) {
        pendingHeader = reader.read(REQUEST_BYTES);
        pendingHeader.catch(() => undefined); // a read left pending at shutdown fails when the socket closes
      }
      const header = control.stopping
        ? await Promise.race([pendingHeader, new Promise<null>((r) => { slotFreed = () => r(null); })])
        : await untilStopped(control, pendingHeader);
      if (header === null) continue;
      pendingHeader = null;
      const decoded = decodeRequest(header);
      if (!decoded.ok) { settings.log(`client sent a ${decoded.reason}: closing the connection`); break; }
      const request = decoded.request;
      if (request.type === NBD_CMD_DISC) break;
      let payload: Uint8Array | null = null;
      if (request.type === NBD_CMD_WRITE) {
        if (request.length > maxPayload) {
          await reader.skip(request.length); // refused without buffering it
        } else {
          payload = (await reader.read(request.length)).slice();
        }
      }
      const cost = request.type === NBD_CMD_READ ? Math.min(request.length, maxPayload) : payload?.length ?? 0;
      inFlight++;
      bytesInFlight += cost;
      void run(request, payload, cost);
    }
  } catch (err) {
    if (!(err instanceof ConnectionClosed)) throw err;
  } finally {
    while (inFlight > 0) await new Promise<void>((resolve) => { slotFreed = resolve; });
  }
}
