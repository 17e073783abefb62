// Exploring one recording: for each flush epoch, every crash state the enumeration yields is
// judged, and for a sample of dirty states the repair itself is crashed at every point.
import type { MemoryFile } from '../../src/io/memory-file.js';
import { readHeader, type RepairHook } from '../../src/engine/open.js';
import { repairOnOpen } from '../../src/ops/open.js';
import { QED_F_NEED_CHECK } from '../../src/format/constants.js';
import { CrashDisk, CrashFile, EventClock, crashEpochs } from './crash-file.js';
import { Random } from './crash-random.js';
import { ContentModel, type Expectation } from './content-model.js';
import type { Recording } from './crash-workload.js';
import { crashStates, describeLanded, type CrashStateOptions } from './crash-states.js';
import { judgeState } from './crash-judge.js';
import { writeBackingFiles } from './qemu-judge.js';

export interface ExploreOptions extends CrashStateOptions {
  /** Says, state by state, whether to ask `qemu-img check` too, and in which directory. */
  qemuSample?: () => string | null;
  /** Stop early once this many violations were found (the broken-engine tests need only a few). */
  stopAfter?: number;
  /** Asked for each crash state with NEED_CHECK set: also crash its repair at every point? */
  repairCrashSample?: () => boolean;
  /** false: judge only the crash states of interrupted repairs (the repair-crash test). */
  judgeWorkloadStates?: boolean;
  /** The repair whose crashes are explored (default: the one openDevice runs). */
  repair?: RepairHook;
}

export interface Violation { where: string; problems: string[] }

export interface ExploreResult {
  /** Crash states judged, those of interrupted repairs included. */
  states: number;
  /** Of which: crash states of a repair interrupted part-way. */
  repairStates: number;
  epochs: number;
  qemuChecks: number;
  violations: Violation[];
}

export function emptyResult(): ExploreResult { return { states: 0, repairStates: 0, epochs: 0, qemuChecks: 0, violations: [] }; }

export function addResult(total: ExploreResult, part: ExploreResult): void {
  total.states += part.states;
  total.repairStates += part.repairStates;
  total.epochs += part.epochs;
  total.qemuChecks += part.qemuChecks;
  total.violations.push(...part.violations);
}

export async function exploreRecording(rec: Recording, options: ExploreOptions = {}): Promise<ExploreResult> {
  const result = emptyResult();
  const rng = new Random(rec.seed ^ 0xc4a5);
  const model = new ContentModel(rec.initialContent, rec.workload.size, rec.guest);
  const disks = new CrashDisk(rec.initialDisk);
  // QEMU refuses table_size 1 (its qed_check_table_offset takes a one-cluster table for an
  // overflow), so such images cannot be shown to it.
  const qemuCanOpen = rec.workload.tableSize > 1;
  const epochs = crashEpochs(rec.log);
  for (const [epochIndex, epoch] of epochs.entries()) {
    result.epochs++;
    const exp = model.expectationAt(epoch.before);
    for (const landed of crashStates(epoch.pending, rng, options)) {
      const disk = disks.materialise(epoch, landed);
      if (options.repairCrashSample && needsCheck(disk) && options.repairCrashSample()) {
        const where = `${rec.workload.name} seed ${rec.seed} epoch ${epochIndex + 1}/${epochs.length}: ${describeLanded(epoch.pending, landed)}, then a crash during its repair`;
        const repair = await exploreRepairCrashes(disk, rec, model, exp, rng, where, options, qemuCanOpen);
        result.states += repair.states;
        result.repairStates += repair.states;
        result.qemuChecks += repair.qemuChecks;
        result.violations.push(...repair.violations);
        if (options.stopAfter !== undefined && result.violations.length >= options.stopAfter) return result;
      }
      if (options.judgeWorkloadStates === false) continue;
      const sample = qemuCanOpen ? options.qemuSample?.() ?? null : null;
      if (sample) writeBackingFiles(rec, sample);
      result.states++;
      const problems = await judgeState(disk, rec, model, exp, rng, sample);
      if (sample) result.qemuChecks++;
      if (problems.length > 0) {
        result.violations.push({
          where: `${rec.workload.name} seed ${rec.seed} epoch ${epochIndex + 1}/${epochs.length}: ${describeLanded(epoch.pending, landed)}`,
          problems,
        });
        if (options.stopAfter !== undefined && result.violations.length >= options.stopAfter) return result;
      }
    }
  }
  return result;
}

/**
 * Crash the NEED_CHECK repair of `disk` at every point (check.ts promises that this is safe):
 * whatever the interrupted repair left must judge exactly as `disk` itself must, since a
 * repair may drop only what was never durable.
 */
async function exploreRepairCrashes(disk: MemoryFile, rec: Recording, model: ContentModel, exp: Expectation, rng: Random,
  where: string, options: ExploreOptions, qemuCanOpen: boolean): Promise<{ states: number; qemuChecks: number; violations: Violation[] }> {
  const file = new CrashFile(disk, new EventClock());
  const violations: Violation[] = [];
  try {
    await (options.repair ?? repairOnOpen)(file, (await readHeader(file)).header);
  } catch {
    return { states: 0, qemuChecks: 0, violations }; // an unrepairable state is the main judge's finding, not this one's
  }
  const disks = new CrashDisk(disk);
  let states = 0;
  let qemuChecks = 0;
  for (const epoch of crashEpochs(file.log)) {
    for (const landed of crashStates(epoch.pending, rng)) {
      states++;
      const sample = qemuCanOpen ? options.qemuSample?.() ?? null : null;
      if (sample) { qemuChecks++; writeBackingFiles(rec, sample); }
      const problems = await judgeState(disks.materialise(epoch, landed), rec, model, exp, rng, sample);
      if (problems.length > 0) violations.push({ where: `${where} [${describeLanded(epoch.pending, landed)}]`, problems });
    }
  }
  return { states, qemuChecks, violations };
}


function needsCheck(disk: MemoryFile): boolean {
  const fields = new Uint8Array(24);
  disk.readSync(fields, 0);
  return (new DataView(fields.buffer).getBigUint64(16, true) & QED_F_NEED_CHECK) !== 0n;
}
