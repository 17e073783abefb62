// Client byte streams for the NBD fuzzer, generated structurally and then, sometimes, mutated
// at the byte level: client flags, options with payloads built the way each option expects
// (names, information requests, meta-context queries) or not (wrong lengths, huge declared
// lengths, invalid UTF-8, unknown options, out of order), an export chosen by GO or
// EXPORT_NAME, then requests of every command with flags, offsets and lengths at their
// boundaries, write payloads, and a DISC or not. Encoded here with Buffer, independently of
// src/nbd's encoders.
import fc from 'fast-check';

const IHAVEOPT = 0x49484156454f5054n;
const REQUEST_MAGIC = 0x25609513;

export const OPTIONS = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 } as const;

export interface FuzzOption { option: number; data: number[]; declaredLength?: number }
export interface FuzzRequest { type: number; flags: number; handle: number; offset: string; length: number; payload: 'exact' | 'short' | 'none' }
export interface ByteMutation { kind: 'flip' | 'cut' | 'insert'; at: number; value: number }
export interface NbdFuzzCase { clientFlags: number; options: FuzzOption[]; requests: FuzzRequest[]; disconnect: boolean; mutations: ByteMutation[] }

const u16 = (v: number) => { const b = Buffer.alloc(2); b.writeUInt16BE(v & 0xffff); return b; };
const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(v >>> 0); return b; };
const u64 = (v: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt.asUintN(64, v)); return b; };
const str32 = (s: Buffer) => Buffer.concat([u32(s.length), s]);

/** The whole client stream for a case, byte mutations applied. */
export function encodeStream(c: NbdFuzzCase, exportSize: number): Buffer {
  const parts: Buffer[] = [u32(c.clientFlags)];
  for (const o of c.options) {
    const data = Buffer.from(o.data);
    parts.push(u64(IHAVEOPT), u32(o.option), u32(o.declaredLength ?? data.length), data);
  }
  for (const r of c.requests) {
    const offset = resolveOffset(r.offset, exportSize);
    parts.push(u32(REQUEST_MAGIC), u16(r.flags), u16(r.type), u64(BigInt(r.handle)), u64(offset), u32(r.length));
    if (r.type === 1 && r.payload !== 'none') {
      const n = r.payload === 'exact' ? r.length : Math.floor(r.length / 2);
      if (n <= 4 * 1024 * 1024) parts.push(Buffer.alloc(n, r.handle & 0xff));
    }
  }
  if (c.disconnect) parts.push(u32(REQUEST_MAGIC), u16(0), u16(2), u64(0xd15cn), u64(0n), u32(0));
  let bytes = Buffer.concat(parts);
  for (const m of c.mutations) {
    if (bytes.length === 0) break;
    const at = m.at % bytes.length;
    if (m.kind === 'flip') bytes[at]! ^= 1 << (m.value % 8);
    else if (m.kind === 'cut') bytes = bytes.subarray(0, at);
    else bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from([m.value & 0xff]), bytes.subarray(at)]);
  }
  return bytes;
}

/** Offsets as anchors relative to the export's end, so that boundaries stay boundaries. */
export function resolveOffset(anchor: string, exportSize: number): bigint {
  const [base, delta] = anchor.split(':') as [string, string];
  const d = BigInt(delta);
  switch (base) {
    case 'start': return BigInt.asUintN(64, d);
    case 'end': return BigInt.asUintN(64, BigInt(exportSize) + d);
    case 'max': return BigInt.asUintN(64, (1n << 64n) - 1n + d);
    default: return BigInt.asUintN(64, (1n << 63n) + d);
  }
}

const text = (s: string) => [...Buffer.from(s)];
const EXPORT_NAMES = ['', 'disk', 'ro', 'nope', 'x'.repeat(5000), '\u00ff\u0000bad'];
const nameArb = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...EXPORT_NAMES).map((s) => [...Buffer.from(s, s.includes('\u0000') ? 'latin1' : 'utf8')]) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map((a) => [...a]) },
);
const exportRequestData = fc.tuple(nameArb, fc.array(fc.oneof(fc.constantFrom(0, 1, 2, 3), fc.nat({ max: 0xffff })), { maxLength: 5 }), fc.nat({ max: 3 }))
  .map(([name, infos, skew]) => [...str32(Buffer.from(name)), ...u16(infos.length + (skew === 3 ? 1 : 0)), ...infos.flatMap((i) => [...u16(i)])]);
const QUERIES = ['base:allocation', 'qemu:allocation-depth', 'base:', 'qemu:', 'qemu:dirty-bitmap:x', '', 'y'.repeat(5000)];
const metaData = fc.tuple(nameArb, fc.array(fc.constantFrom(...QUERIES), { maxLength: 4 }), fc.nat({ max: 20 }))
  .map(([name, queries, count]) => [...str32(Buffer.from(name)), ...u32(count > 16 ? count * 1000 : queries.length),
    ...queries.flatMap((q) => [...str32(Buffer.from(q))])]);

const optionArb: fc.Arbitrary<FuzzOption> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ option: fc.constant(OPTIONS.STRUCTURED_REPLY), data: fc.constant([] as number[]) }) },
  { weight: 3, arbitrary: fc.record({ option: fc.constantFrom(OPTIONS.SET_META_CONTEXT, OPTIONS.LIST_META_CONTEXT), data: metaData }) },
  { weight: 2, arbitrary: fc.record({ option: fc.constant(OPTIONS.INFO), data: exportRequestData }) },
  { weight: 1, arbitrary: fc.record({ option: fc.constantFrom(OPTIONS.LIST, OPTIONS.STARTTLS), data: fc.oneof(fc.constant([] as number[]), fc.constant(text('junk'))) }) },
  { weight: 1, arbitrary: fc.record({ option: fc.oneof(fc.nat({ max: 20 }), fc.constant(0xffffffff)), data: fc.uint8Array({ maxLength: 16 }).map((a) => [...a]) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      option: fc.constantFrom(OPTIONS.GO, OPTIONS.INFO, OPTIONS.SET_META_CONTEXT, OPTIONS.LIST),
      data: exportRequestData,
      declaredLength: fc.constantFrom(0, 1, 3, 65536, 65537, 0x7fffffff, 0xffffffff),
    }),
  },
);

/** How the handshake ends: GO or EXPORT_NAME of some export, ABORT, or nothing. */
const endingArb: fc.Arbitrary<FuzzOption[]> = fc.oneof(
  // Mostly a GO that succeeds, so that most streams reach their requests.
  {
    weight: 8,
    arbitrary: fc.tuple(fc.constantFrom('', 'disk', 'ro'), fc.subarray([1, 2, 3]))
      .map(([name, infos]) => [{ option: OPTIONS.GO, data: [...str32(Buffer.from(name)), ...u16(infos.length), ...infos.flatMap((i) => [...u16(i)])] }]),
  },
  { weight: 3, arbitrary: exportRequestData.map((data) => [{ option: OPTIONS.GO, data }]) },
  { weight: 2, arbitrary: fc.constantFrom('', 'disk', 'ro', 'nope').map((n) => [{ option: OPTIONS.EXPORT_NAME, data: text(n) }]) },
  { weight: 1, arbitrary: fc.constant<FuzzOption[]>([{ option: OPTIONS.ABORT, data: [] }]) },
  { weight: 1, arbitrary: fc.constant([] as FuzzOption[]) },
);

const OFFSETS = ['start:0', 'start:512', 'start:4096', 'start:1', 'end:0', 'end:-512', 'end:-1', 'end:512', 'end:-65536', 'max:0', 'max:-511', 'half:0'];
const LENGTHS = [0, 1, 511, 512, 4096, 65536, 65537, 1 << 20, 32 * 1024 * 1024, 32 * 1024 * 1024 + 1, 0x7fffffff, 0xffffffff];

const requestArb = (handle: number): fc.Arbitrary<FuzzRequest> => fc.record({
  type: fc.oneof({ weight: 10, arbitrary: fc.constantFrom(0, 0, 1, 1, 3, 4, 5, 6, 7, 7) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) }),
  flags: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 3, arbitrary: fc.nat({ max: 31 }) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) }),
  handle: fc.constant(handle),
  offset: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...OFFSETS) }, { weight: 1, arbitrary: fc.nat({ max: 1 << 16 }).map((n) => `start:${n * 512}`) }),
  // Writes stay small mostly: the payload is sent for real.
  length: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...LENGTHS.slice(0, 7)) }, { weight: 1, arbitrary: fc.constantFrom(...LENGTHS) }),
  payload: fc.constantFrom('exact' as const, 'exact' as const, 'exact' as const, 'short' as const, 'none' as const),
});

export const nbdFuzzCaseArb: fc.Arbitrary<NbdFuzzCase> = fc.record({
  clientFlags: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(1, 3) }, { weight: 1, arbitrary: fc.constantFrom(0, 2, 4, 0xffffffff) }),
  options: fc.tuple(fc.array(optionArb, { maxLength: 5 }), endingArb).map(([list, end]) => [...list, ...end]),
  requests: fc.integer({ min: 0, max: 12 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => requestArb(i + 1)))),
  disconnect: fc.boolean(),
  mutations: fc.oneof(
    { weight: 5, arbitrary: fc.constant([] as ByteMutation[]) },
    { weight: 2, arbitrary: fc.array(fc.record({ kind: fc.constantFrom('flip' as const, 'cut' as const, 'insert' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 3 }) },
  ),
});
