// The explorer must be able to fail: engines with one write-ordering invariant removed on
// purpose must be caught. If one of these passed, the explorer would be too weak to trust
// (or the invariant would be unnecessary), so each asserts that violations were found.
import test from 'node:test';
import assert from 'node:assert/strict';
import { QedImage } from '../../src/engine/qed-image.js';
import type { BlockFile } from '../../src/io/block-file.js';
import { encodeHeader, type QedHeader } from '../../src/format/header.js';
import { QED_F_NEED_CHECK } from '../../src/format/constants.js';
import { repairOnOpen } from '../../src/ops/open.js';
import type { WriteOptions, WriteZeroesOptions } from '../../src/engine/device.js';
import { type RunOptions, type Workload, exploreUntil, patternBytes } from '../support/crash-explorer.js';
import { closeWorkloads, fuaWorkloads } from '../support/lifecycle-workloads.js';

const KiB = 1024;

/** [I3] removed: tables are written without NEED_CHECK, so a torn writeback is trusted on open. */
class SkipsNeedCheck extends QedImage {
  protected override async setNeedCheck(): Promise<void> { /* broken on purpose */ }
}

/** [I2] removed: entries are written before the copied-on-write data is durable. */
class LinksBeforeData extends QedImage {
  protected override async syncDataBeforeLinks(): Promise<void> { /* broken on purpose */ }
}

/**
 * [L1] removed: close() writes back and flushes at once, while admitted requests are still
 * running, and closes the file after they settle with no second writeback. Requests still
 * resolve and newcomers still get SHUTDOWN, so only the content check can tell. The early
 * writeback itself is let finish before the file closes: closing under it would fail close()
 * outright whenever the requests drain first, a different fault from the one named here.
 */
class WritesBackBeforeDrain extends QedImage {
  private early: Promise<void> = Promise.resolve();
  override close(): Promise<void> {
    this.early = this.flushAll(); // broken on purpose
    const closing = super.close();
    return Promise.all([this.early, closing]).then(() => undefined);
  }
  protected override async closeFiles(): Promise<void> {
    await this.early.catch(() => undefined);
    this.cache.clear();
    await this.file.close();
  }
}

/** FUA ignored: the write is acknowledged with no flush behind it. */
class IgnoresFua extends QedImage {
  override write(buf: Uint8Array, offset: number, options: WriteOptions = {}): Promise<void> {
    return super.write(buf, offset, { ...options, fua: false });
  }
  override writeZeroes(offset: number, length: number, options: WriteZeroesOptions = {}): Promise<void> {
    return super.writeZeroes(offset, length, { ...options, fua: false });
  }
}

/** A repair that declares the image clean before its fixes are durable, then repairs. */
async function clearsNeedCheckFirst(file: BlockFile, header: QedHeader): Promise<void> {
  await file.write(encodeHeader({ ...header, features: header.features & ~QED_F_NEED_CHECK }), 0);
  await file.flush();
  await repairOnOpen(file, header);
}

/** Random partial and whole-cluster writes with flushes; over a raw backing file if asked. */
function writesAndFlushes(backing: boolean): Workload {
  return {
    name: `writes and flushes ${backing ? 'over a raw backing file' : 'without a backing file'}`,
    clusterSize: 4 * KiB, tableSize: 2, size: 256 * KiB,
    backing: backing ? { format: 'raw', size: 256 * KiB } : undefined,
    async run(g, rng) {
      for (let i = 0; i < 12; i++) {
        const sectors = 1 + rng.int(16);
        const offset = rng.int(g.size / 512 - sectors) * 512;
        await g.write(patternBytes(sectors * 512, rng.int(1 << 30)), offset);
        if (rng.chance(0.3)) await g.flush();
      }
      await g.close();
    },
  };
}

/**
 * Zero clusters and writes scattered over several L2 tables' coverage, over a backing file.
 * With a backing file every data cluster is written whole and flushed before any entry
 * [I2], so the file already covers every table that has data after it; what still needs
 * NEED_CHECK is a new L2 table with no data after it (here: one holding only zero
 * clusters), whose L1 link can land before the file is grown over it.
 */
const zeroClustersInNewTables: Workload = {
  name: 'zero clusters in new L2 tables over a raw backing file',
  clusterSize: 4 * KiB, tableSize: 2, size: 16 * 1024 * KiB, backing: { format: 'raw', size: 64 * KiB },
  async run(g, rng) {
    const perTable = 4 * 1024 * KiB;
    for (let i = 0; i < 8; i++) {
      const at = rng.int(4) * perTable + rng.int(perTable / 4096 - 2) * 4096;
      if (rng.chance(0.5)) await g.writeZeroes(at, 4096 * (1 + rng.int(2)));
      else await g.write(patternBytes(4096, rng.int(1 << 30)), at);
      if (rng.chance(0.4)) await g.flush();
    }
    await g.close();
  },
};

async function violationsOf(label: string, run: RunOptions, workload: Workload): Promise<number> {
  const result = await exploreUntil(label, [workload], 3_000, run);
  console.log(`crash explorer caught ${label}: ${result.violations.length} violation(s) in ${result.states} states; first: ${result.violations[0]?.problems[0] ?? 'none'}`);
  return result.violations.length;
}

test('an engine that skips NEED_CHECK before writing tables is caught', async () => {
  assert.ok(await violationsOf('skipped NEED_CHECK', { imageClass: SkipsNeedCheck }, writesAndFlushes(false)) > 0);
});

test('an engine that skips NEED_CHECK is caught over a backing file too', async () => {
  assert.ok(await violationsOf('skipped NEED_CHECK (backing)', { imageClass: SkipsNeedCheck }, zeroClustersInNewTables) > 0);
});

test('an engine that links copied-on-write clusters before their data is durable is caught', async () => {
  assert.ok(await violationsOf('link before data', { imageClass: LinksBeforeData }, writesAndFlushes(true)) > 0);
});

test('a repair that clears NEED_CHECK before its fixes are durable is caught when it is interrupted', async () => {
  assert.ok(await violationsOf('repair clearing NEED_CHECK first', { repair: clearsNeedCheckFirst, focus: 'repair' }, writesAndFlushes(false)) > 0);
});

test('an engine whose close() writes back before the requests in flight settled is caught', async () => {
  assert.ok(await violationsOf('writeback before drain', { imageClass: WritesBackBeforeDrain }, closeWorkloads[0]!) > 0);
});

test('an engine that acknowledges FUA writes without making them durable is caught', async () => {
  assert.ok(await violationsOf('FUA ignored', { imageClass: IgnoresFua }, fuaWorkloads[0]!) > 0);
});
