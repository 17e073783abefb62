// What each guest sector may hold after a crash, given the guest's log (the values a crash
// could leave there, never a third), and the check that reads an image back against it. The
// explorer, the fault tests and the kill test all judge content this way.
import type { BlockDevice } from '../../src/engine/device.js';
import { hex } from '../../src/base/errors.js';
import { SECTOR } from './crash-file.js';
import type { GuestLog, GuestWrite } from './guest-log.js';

const ZERO_SECTOR = new Uint8Array(SECTOR);
const READ_GAP_SECTORS = 32;

export interface Expectation {
  /** Device sizes a crash may leave. */
  sizes: number[];
  /** Allowed values of every sector some write touched; other sectors hold `initial`. */
  candidates: Map<number, Uint8Array[]>;
  /** The keys of `candidates`, ascending. */
  constrained: number[];
}

/**
 * The guest-level promise. A crash before tick `before` (with every request acknowledged
 * before it) must leave each sector holding a value some write could have left: the initial
 * content or a write's bytes, minus those a durable write has replaced. A write is durable
 * when it was acknowledged before a sync that was itself acknowledged before the crash began
 * (before the sync was issued, for a flush; before it was acknowledged, for a close, which
 * drains the requests in flight first), or when it was a FUA write acknowledged before then.
 */
export class ContentModel {
  /** Writes touching each sector, in issue order. */
  private readonly bySector = new Map<number, GuestWrite[]>();
  readonly touched: number[];

  /**
   * `fromEmptyLayer`: the initial content is what a layer with nothing allocated shows (its
   * backing file, or zeros). Otherwise (an image written before the log began) nothing can be
   * assumed about unmapped sectors, so all of them are read back.
   */
  constructor(readonly initial: Uint8Array, readonly initialSize: number, readonly log: GuestLog, readonly fromEmptyLayer = true) {
    for (const w of log.writes) {
      for (let s = w.offset / SECTOR; s < (w.offset + w.length) / SECTOR; s++) {
        let list = this.bySector.get(s);
        if (!list) this.bySector.set(s, list = []);
        list.push(w);
      }
    }
    this.touched = [...this.bySector.keys()].sort((a, b) => a - b);
  }

  /**
   * What a crash before tick `before` may leave. `live`: no crash at all (the image is still
   * open, or was closed by a process that kept running), so every acknowledged write counts.
   */
  expectationAt(before: number, live = false): Expectation {
    // A flush covers what was acknowledged before it was issued; a close, what was acknowledged before it was.
    const lastSync = live ? Infinity
      : Math.max(-Infinity, ...this.log.syncs.filter((s) => s.acked < before).map((s) => (s.drains ? s.acked : s.issued)));
    // A FUA write is durable once acknowledged.
    const durable = (w: GuestWrite): boolean => w.acked < lastSync || (w.fua === true && w.acked < before);
    const candidates = new Map<number, Uint8Array[]>();
    for (const [sector, writes] of this.bySector) {
      const issued = writes.filter((w) => w.issued < before);
      // A write is replaced once a durable write to the sector was issued after it was acknowledged.
      const replacedBelow = Math.max(-Infinity, ...issued.filter(durable).map((w) => w.issued));
      const values: Uint8Array[] = [];
      if (replacedBelow === -Infinity) values.push(this.initialSector(sector));
      for (const w of issued) if (!(w.acked < replacedBelow)) values.push(sectorOf(w, sector));
      candidates.set(sector, values);
    }
    const grown = this.log.resizes.filter((r) => r.issued < before);
    const least = Math.max(this.initialSize, ...grown.filter((r) => r.acked < before).map((r) => r.size));
    const sizes = [this.initialSize, ...grown.map((r) => r.size)].filter((s) => s >= least);
    return { sizes, candidates, constrained: [...candidates.keys()].sort((a, b) => a - b) };
  }

  initialSector(sector: number): Uint8Array {
    return this.initial.subarray(sector * SECTOR, (sector + 1) * SECTOR);
  }
}

function sectorOf(w: GuestWrite, sector: number): Uint8Array {
  if (!w.data) return ZERO_SECTOR;
  const at = sector * SECTOR - w.offset;
  return w.data.subarray(at, at + SECTOR);
}

/**
 * Read back what `exp` constrains and list every sector that breaks it. Below the initial
 * size of a model that starts from an empty layer, sectors no write touched and that the layer
 * maps nowhere come from the backing file (or are zeros), which is their initial content by
 * construction, so they are not read. Past it (space a resize added) everything is read: it
 * must be zeros whatever the backing holds.
 */
export async function verifyContent(device: BlockDevice, model: ContentModel, exp: Expectation): Promise<string[]> {
  if (!exp.sizes.includes(device.size)) {
    return [`image size is ${hex(device.size)}, expected one of ${exp.sizes.map(hex).join(', ')}`];
  }
  const sectors = device.size / SECTOR;
  const mustRead = new Uint8Array(sectors);
  mustRead.fill(1, model.fromEmptyLayer ? model.initialSize / SECTOR : 0);
  for (const s of model.touched) if (s < sectors) mustRead[s] = 1;
  for (const e of await device.layerStatus(0, device.size)) {
    if (e.kind !== 'unallocated') mustRead.fill(1, e.guestOffset / SECTOR, Math.ceil((e.guestOffset + e.length) / SECTOR));
  }
  // Close small gaps: one longer read costs less than two, and every sector must pass anyway.
  for (let end = mustRead.indexOf(0, mustRead.indexOf(1)); end > 0;) {
    const next = mustRead.indexOf(1, end);
    if (next === -1) break;
    if (next - end < READ_GAP_SECTORS) mustRead.fill(1, end, next);
    end = mustRead.indexOf(0, next);
  }
  const problems: string[] = [];
  for (let first = mustRead.indexOf(1); first !== -1 && problems.length <= 4; first = mustRead.indexOf(1, first)) {
    const stop = mustRead.indexOf(0, first);
    const end = stop === -1 ? sectors : stop;
    const got = Buffer.allocUnsafe((end - first) * SECTOR);
    await device.read(got, first * SECTOR);
    // Sectors no write touched must hold their initial content: compare each stretch of them
    // at once, and look sector by sector only at touched ones or where a stretch differs.
    let next = lowerBound(exp.constrained, first);
    for (let s = first; s < end && problems.length <= 4;) {
      const touched = next < exp.constrained.length && exp.constrained[next] === s;
      const stretchEnd = touched ? s + 1 : Math.min(end, exp.constrained[next] ?? end);
      const at = (s - first) * SECTOR;
      const length = (stretchEnd - s) * SECTOR;
      const allowed = touched ? exp.candidates.get(s)! : null;
      const fine = allowed
        ? allowed.some((c) => got.compare(c, 0, SECTOR, at, at + SECTOR) === 0)
        : got.compare(model.initial, s * SECTOR, s * SECTOR + length, at, at + length) === 0;
      if (!fine) {
        for (let bad = s; bad < stretchEnd && problems.length <= 4; bad++) {
          const value = got.subarray((bad - first) * SECTOR, (bad - first + 1) * SECTOR);
          if (!allowed && sameBytes(value, model.initialSector(bad))) continue;
          problems.push(problems.length === 4 ? '...'
            : `guest sector at ${hex(bad * SECTOR)} holds ${describeSector(value, model, bad)}, not one of the ${allowed?.length ?? 1} value(s) a crash may leave`);
        }
      }
      if (touched) next++;
      s = stretchEnd;
    }
    first = end;
  }
  return problems;
}

/** The first index of the ascending `sorted` whose value is at least `value`. */
function lowerBound(sorted: number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function describeSector(value: Uint8Array, model: ContentModel, sector: number): string {
  if (sameBytes(value, ZERO_SECTOR)) return 'zeros';
  if (sameBytes(value, model.initialSector(sector))) return 'its initial (backing) content';
  for (const w of model.log.writes) {
    if (!w.data) continue;
    for (let at = 0; at < w.length; at += SECTOR) {
      if (sameBytes(value, w.data.subarray(at, at + SECTOR))) return `data written for guest ${hex(w.offset + at)}`;
    }
  }
  return 'bytes no write produced';
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}
