// The operations the operation crash explorer covers (operation-crash.ts), each with what a
// crash part-way may leave, as the operation's design promises it:
//   commit        the overlay shows exactly what it showed before, whatever the state (its
//                 clusters go only once the base holds them durably); each sector of the base
//                 holds its old content or the overlay's.
//   rebase (safe) the overlay shows exactly what it showed before: what differs is copied in
//                 and made durable before the header names the new backing file.
//   rebase -u, amend   the header switches atomically: the overlay shows all of its old view
//                 or all of its new one.
//   convert -n    each sector of the target holds its old content or the source's; once the
//                 operation returned, the target is the source.
import { MemoryStore } from '../../src/io/memory-file.js';
import { createImage } from '../../src/ops/create.js';
import { openDevice } from '../../src/ops/open.js';
import { commitImage } from '../../src/ops/commit.js';
import { rebaseImage } from '../../src/ops/rebase.js';
import { amendImage } from '../../src/ops/amend.js';
import { convertImage } from '../../src/ops/convert.js';
import { Random, patternBytes } from './crash-random.js';
import { guestView, opensClean, sameContent, sectorsOfNeither, type OperationScenario } from './operation-crash.js';

const KiB = 1024;
const SIZE = 512 * KiB;
const CS = 4 * KiB;

/** A QED image (4 KiB clusters, table_size 2) with a few random writes and zero writes, or a raw file. */
async function image(store: MemoryStore, path: string, rng: Random, options: { format?: 'qed' | 'raw'; backing?: string; backingFormat?: 'qed' | 'raw'; writes?: number } = {}): Promise<void> {
  await createImage(path, { store, size: SIZE, format: options.format ?? 'qed', clusterSize: options.format === 'raw' ? undefined : CS,
    tableSize: options.format === 'raw' ? undefined : 2, backingFile: options.backing, backingFormat: options.backingFormat });
  const device = await openDevice(path, { store, idleFlushMs: 1e9 });
  for (let i = 0; i < (options.writes ?? 8); i++) {
    const sectors = 1 + rng.int(24);
    const offset = rng.int(SIZE / 512 - sectors) * 512;
    if (rng.chance(0.2)) await device.writeZeroes(offset, sectors * 512);
    else await device.write(patternBytes(sectors * 512, rng.int(1 << 30)), offset);
  }
  await device.close();
}

async function qedViews(store: MemoryStore, paths: string[]): Promise<Map<string, Uint8Array>> {
  return new Map(await Promise.all(paths.map(async (p) => [p, await guestView(store, p)] as [string, Uint8Array])));
}

async function allOpenClean(store: MemoryStore, paths: string[]): Promise<string[]> {
  const problems: string[] = [];
  for (const p of paths) problems.push(...await opensClean(store, p));
  return problems;
}

const TOP = '/op/top.qed';

function commitScenario(name: string, baseFormat: 'qed' | 'raw', keepOverlay: boolean): OperationScenario {
  const base = `/op/base.${baseFormat}`;
  return {
    name, written: [TOP, base],
    async setup(store, rng) {
      await image(store, base, rng, { format: baseFormat, writes: 10 });
      await image(store, TOP, rng, { backing: `base.${baseFormat}`, backingFormat: baseFormat, writes: 12 });
    },
    run: (store) => commitImage(TOP, { store, keepOverlay }),
    views: (store) => qedViews(store, [TOP, base]),
    async judge(state, before, after) {
      const problems = await allOpenClean(state, baseFormat === 'qed' ? [base, TOP] : [TOP]);
      if (problems.length > 0) return problems;
      if (!sameContent(await guestView(state, TOP), before.get(TOP)!)) problems.push('the overlay no longer shows what it showed before the commit');
      const bad = sectorsOfNeither(await guestView(state, base), before.get(base)!, after.get(base)!);
      if (bad.length > 0) problems.push(`${bad.length} sector(s) of the base hold neither their old content nor the overlay's (first: ${bad[0]})`);
      return problems;
    },
  };
}

function rebaseScenario(name: string, target: 'qed' | 'raw' | 'none', unsafe: boolean): OperationScenario {
  const newName = target === 'none' ? '' : `new.${target}`;
  return {
    name, written: [TOP],
    async setup(store, rng) {
      await image(store, '/op/old.qed', rng, { writes: 10 });
      if (target !== 'none') await image(store, `/op/new.${target}`, rng, { format: target, writes: 10 });
      await image(store, TOP, rng, { backing: 'old.qed', backingFormat: 'qed', writes: 8 });
    },
    run: (store) => rebaseImage(TOP, newName, { store, unsafe, backingFormat: target === 'none' ? undefined : target }),
    views: (store) => qedViews(store, [TOP]),
    async judge(state, before, after) {
      const problems = await allOpenClean(state, [TOP]);
      if (problems.length > 0) return problems;
      const now = await guestView(state, TOP);
      if (!unsafe && !sameContent(now, before.get(TOP)!)) problems.push('the overlay no longer shows what it showed before the rebase');
      if (unsafe && !sameContent(now, before.get(TOP)!) && !sameContent(now, after.get(TOP)!)) problems.push('the overlay shows neither its old view nor its new one');
      return problems;
    },
  };
}

function amendScenario(name: string, newName: string): OperationScenario {
  return {
    name, written: [TOP],
    async setup(store, rng) {
      await image(store, '/op/old.qed', rng, { writes: 10 });
      await image(store, store.resolveBacking(TOP, newName), rng, { format: 'raw', writes: 10 });
      await image(store, TOP, rng, { backing: 'old.qed', backingFormat: 'qed', writes: 8 });
    },
    run: (store) => amendImage(TOP, { store, backingFile: newName, backingFormat: 'raw' }),
    views: (store) => qedViews(store, [TOP]),
    async judge(state, before, after) {
      const problems = await allOpenClean(state, [TOP]);
      if (problems.length > 0) return problems;
      const now = await guestView(state, TOP);
      if (!sameContent(now, before.get(TOP)!) && !sameContent(now, after.get(TOP)!)) problems.push('the overlay shows neither its old view nor its new one');
      return problems;
    },
  };
}

function convertIntoScenario(name: string, targetFormat: 'qed' | 'raw', sourceHasBacking: boolean): OperationScenario {
  const dst = `/op/dst.${targetFormat}`;
  const src = '/op/src.qed';
  return {
    name, written: [dst],
    async setup(store, rng) {
      if (sourceHasBacking) await image(store, '/op/srcbase.qed', rng, { writes: 10 });
      await image(store, src, rng, { writes: 14, backing: sourceHasBacking ? 'srcbase.qed' : undefined, backingFormat: sourceHasBacking ? 'qed' : undefined });
      await image(store, dst, rng, { format: targetFormat, writes: 14 });
    },
    run: (store) => convertImage(src, dst, { store, noCreate: true, inFlight: 4, chunkSize: 64 * KiB }),
    views: (store) => qedViews(store, [dst, src]),
    async judge(state, before, after) {
      const problems = await allOpenClean(state, targetFormat === 'qed' ? [dst] : []);
      if (problems.length > 0) return problems;
      if (!sameContent(after.get(dst)!, after.get(src)!)) problems.push('after convert -n the target is not the source');
      const bad = sectorsOfNeither(await guestView(state, dst), before.get(dst)!, after.get(dst)!);
      if (bad.length > 0) problems.push(`${bad.length} sector(s) of the target hold neither their old content nor the source's (first: ${bad[0]})`);
      return problems;
    },
  };
}

/** Grouped by the operation named in reports and in the README. */
export const operationScenarios: Array<{ operation: string; scenarios: OperationScenario[] }> = [
  { operation: 'commit', scenarios: [commitScenario('commit into a QED base', 'qed', false), commitScenario('commit into a raw base', 'raw', false), commitScenario('commit -d', 'qed', true)] },
  { operation: 'rebase (safe)', scenarios: [rebaseScenario('rebase onto a QED file', 'qed', false), rebaseScenario('rebase onto a raw file', 'raw', false), rebaseScenario('rebase -b "" (flatten)', 'none', false)] },
  { operation: 'rebase -u', scenarios: [rebaseScenario('rebase -u onto a QED file', 'qed', true), rebaseScenario('rebase -u -b ""', 'none', true)] },
  { operation: 'amend', scenarios: [amendScenario('amend backing_file', 'new.raw'), amendScenario('amend to a longer name', 'a/much/longer/name/for/the/new/backing.raw')] },
  { operation: 'convert -n', scenarios: [convertIntoScenario('convert -n into a QED image', 'qed', false), convertIntoScenario('convert -n of a chain into a QED image', 'qed', true), convertIntoScenario('convert -n into a raw file', 'raw', false)] },
];
