// Structure-aware mutations of a valid QED image, as plain data so that a failing case can be
// kept in a test file verbatim: every header field set to a value at one of its boundaries,
// table entries aimed at every structure of the file, truncation at every cluster boundary
// (and a sector or a byte around it), bit flips in the header, the backing name and the
// tables, backing names that lead anywhere, unknown feature bits, and NEED_CHECK over
// whatever the other mutations broke. Values are symbolic (an anchor plus a delta) and
// resolved against the base image's layout, so that "the second L2 table plus one sector"
// means the same thing whichever geometry is mutated.
import fc from 'fast-check';
import type { FuzzBase, FuzzLayout } from './fuzz-base-images.js';

export type HeaderField =
  | 'magic' | 'clusterSize' | 'tableSize' | 'headerSize' | 'features' | 'compatFeatures' | 'autoclearFeatures'
  | 'l1TableOffset' | 'imageSize' | 'backingFilenameOffset' | 'backingFilenameSize';

/** Byte offset and width of each header field (qed-format.md). */
const FIELDS: Record<HeaderField, { at: number; bytes: 4 | 8 }> = {
  magic: { at: 0, bytes: 4 }, clusterSize: { at: 4, bytes: 4 }, tableSize: { at: 8, bytes: 4 }, headerSize: { at: 12, bytes: 4 },
  features: { at: 16, bytes: 8 }, compatFeatures: { at: 24, bytes: 8 }, autoclearFeatures: { at: 32, bytes: 8 },
  l1TableOffset: { at: 40, bytes: 8 }, imageSize: { at: 48, bytes: 8 }, backingFilenameOffset: { at: 56, bytes: 4 },
  backingFilenameSize: { at: 60, bytes: 4 },
};
const FIELD_NAMES = Object.keys(FIELDS) as HeaderField[];

/** What a value is relative to: a constant, a structure of the base image, or a power of two. */
export type Anchor =
  | 'zero' | 'cluster' | 'halfCluster' | 'fileEnd' | 'l1' | 'l2' | 'data' | 'imageSize' | 'capacity'
  | 'tableBytes' | 'headerBytes' | 'pow2';

export interface Value {
  anchor: Anchor;
  /** Which L2 table or data cluster (modulo their count), or the power of two. */
  which: number;
  /** Added to the anchor: 0, ±1, ±a sector, ±a cluster. */
  delta: number;
}

export type Mutation =
  | { kind: 'header'; field: HeaderField; value: Value }
  | { kind: 'entry'; level: 'l1' | 'l2'; table: number; index: number; value: Value }
  | { kind: 'truncate'; cluster: number; delta: number }
  | { kind: 'flip'; region: 'header' | 'l1' | 'l2' | 'name'; at: number; bit: number }
  | { kind: 'backing'; name: string; raw: boolean }
  | { kind: 'feature'; word: 'features' | 'compatFeatures' | 'autoclearFeatures'; bit: number }
  | { kind: 'needCheck' };

export interface FuzzCase { base: number; mutations: Mutation[] }

/** The value a symbolic Value stands for, as an unsigned 64-bit integer. */
export function resolveValue(v: Value, layout: FuzzLayout): bigint {
  const cs = layout.clusterSize;
  const pick = (list: number[]) => (list.length === 0 ? 0 : list[v.which % list.length]!);
  let anchor: bigint;
  switch (v.anchor) {
    case 'zero': anchor = 0n; break;
    case 'cluster': anchor = BigInt(cs); break;
    case 'halfCluster': anchor = BigInt(cs / 2); break;
    case 'fileEnd': anchor = BigInt(layout.fileSize); break;
    case 'l1': anchor = BigInt(layout.l1Offset); break;
    case 'l2': anchor = BigInt(pick(layout.l2Tables)); break;
    case 'data': anchor = BigInt(pick(layout.dataClusters)); break;
    case 'imageSize': anchor = BigInt(layout.imageSize); break;
    case 'capacity': anchor = BigInt(((layout.tableSize * cs / 8) ** 2) * cs); break;
    case 'tableBytes': anchor = BigInt(layout.tableSize * cs); break;
    case 'headerBytes': anchor = BigInt(layout.headerSize * cs); break;
    case 'pow2': anchor = 1n << BigInt(v.which % 65); break;
  }
  return BigInt.asUintN(64, anchor + BigInt(v.delta));
}

function setU(bytes: Uint8Array, at: number, width: 4 | 8, value: bigint): void {
  if (at + width > bytes.length) return; // the file was cut shorter than the field
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (width === 4) view.setUint32(at, Number(BigInt.asUintN(32, value)), true);
  else view.setBigUint64(at, BigInt.asUintN(64, value), true);
}

function getU64(bytes: Uint8Array, at: number): bigint {
  if (at + 8 > bytes.length) return 0n;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(at, true);
}

/** Apply the mutations in order to a copy of the base image; a truncation may shorten the file. */
export function applyMutations(base: FuzzBase, mutations: readonly Mutation[]): Uint8Array {
  const layout = base.layout;
  const cs = layout.clusterSize;
  let bytes = base.bytes.slice();
  const grow = (end: number) => {
    if (end <= bytes.length) return;
    const bigger = new Uint8Array(end);
    bigger.set(bytes);
    bytes = bigger;
  };
  for (const m of mutations) {
    switch (m.kind) {
      case 'header': {
        const f = FIELDS[m.field];
        setU(bytes, f.at, f.bytes, resolveValue(m.value, layout));
        break;
      }
      case 'entry': {
        const l1Entries = layout.tableSize * cs / 8;
        let at: number;
        if (m.level === 'l1') {
          at = layout.l1Offset + (m.index % l1Entries) * 8;
        } else {
          if (layout.l2Tables.length === 0) break;
          at = layout.l2Tables[m.table % layout.l2Tables.length]! + (m.index % l1Entries) * 8;
        }
        setU(bytes, at, 8, resolveValue(m.value, layout));
        break;
      }
      case 'truncate': {
        const end = Math.max(0, (m.cluster % (Math.ceil(layout.fileSize / cs) + 2)) * cs + m.delta);
        if (end < bytes.length) bytes = bytes.slice(0, end);
        else grow(end);
        break;
      }
      case 'flip': {
        const region = regionOf(m.region, layout, bytes);
        if (region.length === 0) break;
        const at = region.start + (m.at % region.length);
        if (at < bytes.length) bytes[at]! ^= 1 << (m.bit % 8);
        break;
      }
      case 'backing': {
        const name = new TextEncoder().encode(m.name);
        // QEMU stores the name right after the fixed fields; a long one runs into whatever follows.
        grow(64 + name.length);
        bytes.set(name, 64);
        const features = getU64(bytes, 16) | 1n | (m.raw ? 4n : 0n);
        setU(bytes, 16, 8, m.raw ? features : features & ~4n);
        setU(bytes, 56, 4, 64n);
        setU(bytes, 60, 4, BigInt(name.length));
        break;
      }
      case 'feature': {
        const f = FIELDS[m.word];
        setU(bytes, f.at, 8, getU64(bytes, f.at) | (1n << BigInt(m.bit % 64)));
        break;
      }
      case 'needCheck':
        setU(bytes, 16, 8, getU64(bytes, 16) | 2n);
        break;
    }
  }
  return bytes;
}

/** The bytes a flip may hit: the header fields, the stored backing name, or the entries in use. */
function regionOf(region: 'header' | 'l1' | 'l2' | 'name', layout: FuzzLayout, bytes: Uint8Array): { start: number; length: number } {
  switch (region) {
    case 'header': return { start: 0, length: 64 };
    case 'name': {
      const size = bytes.length >= 64 ? new DataView(bytes.buffer, bytes.byteOffset).getUint32(60, true) : 0;
      return { start: 64, length: Math.min(size, 4096) };
    }
    case 'l1': return { start: layout.l1Offset, length: 8 * (Math.max(...layout.l1Used, 0) + 1) };
    case 'l2': {
      const t = layout.l2Tables[0];
      return t === undefined ? { start: 0, length: 0 } : { start: t, length: 8 * (Math.max(...layout.l2Used[0]!, 0) + 1) };
    }
  }
}

const ANCHORS: Anchor[] = ['zero', 'cluster', 'halfCluster', 'fileEnd', 'l1', 'l2', 'data', 'imageSize', 'capacity', 'tableBytes', 'headerBytes', 'pow2'];
const DELTAS = [0, 0, 0, 1, -1, 7, 512, -512, 4096, -4096, 65536, -65536];

const valueArb: fc.Arbitrary<Value> = fc.record({
  anchor: fc.constantFrom(...ANCHORS),
  which: fc.nat({ max: 64 }),
  delta: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...DELTAS) }, { weight: 1, arbitrary: fc.integer({ min: -(2 ** 20), max: 2 ** 20 }) }),
});

/** Names a backing file may carry: good ones, missing ones, the image itself, a loop, host files, escapes, a raw look-alike. */
export const BACKING_NAMES = [
  'base.raw', 'base.qed', '/fuzz/base.qed', 'image.qed', '/fuzz/image.qed', 'loop-a.qed', 'missing.qed', '/etc/passwd',
  '../../etc/shadow', 'looks-like-qed.raw', '.', '', 'base.raw\x1b[31m\nsecond line', 'dir/../base.raw', 'x'.repeat(5000),
  '\u00e9t\u00e9.qed',
];

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('header' as const), field: fc.constantFrom(...FIELD_NAMES), value: valueArb }) },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('entry' as const), level: fc.constantFrom('l1' as const, 'l2' as const), table: fc.nat({ max: 3 }),
      // Mostly the entries in use (low indexes), sometimes any.
      index: fc.oneof({ weight: 3, arbitrary: fc.nat({ max: 8 }) }, { weight: 1, arbitrary: fc.nat({ max: 1 << 16 }) }),
      value: valueArb,
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), cluster: fc.nat({ max: 200 }), delta: fc.constantFrom(0, 0, 1, -1, 512, -512, 64, 63) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('flip' as const), region: fc.constantFrom('header' as const, 'l1' as const, 'l2' as const, 'name' as const), at: fc.nat({ max: 1 << 12 }), bit: fc.nat({ max: 7 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('backing' as const),
      name: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...BACKING_NAMES) }, { weight: 1, arbitrary: fc.string({ maxLength: 24, unit: 'binary' }) }),
      raw: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('feature' as const), word: fc.constantFrom('features' as const, 'compatFeatures' as const, 'autoclearFeatures' as const), bit: fc.nat({ max: 63 }) }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'needCheck' as const }) },
);

/** A case: a base image and one to four mutations, NEED_CHECK added to a third of them. */
export function fuzzCaseArb(baseCount: number): fc.Arbitrary<FuzzCase> {
  return fc.record({
    base: fc.nat({ max: baseCount - 1 }),
    mutations: fc.tuple(fc.array(mutationArb, { minLength: 1, maxLength: 4 }), fc.nat({ max: 2 }))
      .map(([list, dirty]) => (dirty === 0 ? [...list, { kind: 'needCheck' as const }] : list)),
  });
}
