// The crash explorer: runs a workload against the engine on a recording file, then, for each
// flush epoch of what it recorded, builds crash states (every prefix, every single omission,
// torn writes, all subsets of small epochs and a seeded sample of larger ones) and judges each
// one as the reliability promises ask (docs/reliability.md):
//   1. it opens read-write (NEED_CHECK repair runs) and our checker finds no corruption;
//   2. on a sample, `qemu-img check` agrees, before and after our repair;
//   3. every sector acknowledged before the last completed flush reads back, every other
//      sector holds one of the values a crash could leave there, never a third value;
//   4. the repaired image takes new writes and is still consistent after them.
//
// This file is only the explorer's front door: the tests import from here, and each part
// lives in its own file:
//   crash-random.ts       seeded randomness and data patterns
//   guest-log.ts          the guest's requests, issued and acknowledged, on the shared clock
//   content-model.ts      what each sector may hold after a crash, and reading it back
//   crash-workload.ts     workloads and one recorded run of each
//   crash-states.ts       the crash states of a flush epoch
//   crash-judge.ts        judging one crash state
//   qemu-judge.ts         `qemu-img check` as the second judge
//   explore-recording.ts  every epoch of a recording, and crashes inside its repairs
//   crash-run.ts          seeds, targets, rounds, the report line and the worker thread
export { Random, patternBytes, randomSettle } from './crash-random.js';
export { GuestLog, GuestRecorder, type GuestResize, type GuestSync, type GuestWrite } from './guest-log.js';
export { ContentModel, sameBytes, verifyContent, type Expectation } from './content-model.js';
export { IMAGE_PATH, NO_IDLE_FLUSH_MS, buildBacking, recordWorkload, type Recording, type Workload } from './crash-workload.js';
export { crashStates } from './crash-states.js';
export { corruptionOf, messageOf } from './crash-judge.js';
export { bytesOf, qemuCheck, type QemuVerdict } from './qemu-judge.js';
export {
  addResult, emptyResult, exploreRecording, type ExploreOptions, type ExploreResult, type Violation,
} from './explore-recording.js';
export {
  crashSeed, exploreInWorker, exploreUntil, reportLine, soakFactor, type RunOptions, type RunTuning, type WorkloadSource,
} from './crash-run.js';
