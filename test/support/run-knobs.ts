// The environment knobs of the randomized suites (crash explorer, fuzzers): a seed that
// repeats a run, and a soak factor that multiplies its work beyond a CI run.

/** The seed named by `variable` (a positive whole number) repeats a run; otherwise a new one each run. */
export function seedFrom(variable: string): number {
  const fixed = Number(process.env[variable]);
  return Number.isSafeInteger(fixed) && fixed > 0 ? fixed : 1 + Math.floor(Math.random() * 1e9);
}

/** 1 unless `variable` is set (and not 0): then `perUnit` times its value (times 1 if it is no positive number). */
export function soakFrom(variable: string, perUnit: number): number {
  const soak = process.env[variable];
  if (soak === undefined || soak === '' || soak === '0') return 1;
  const n = Number(soak);
  return perUnit * (Number.isFinite(n) && n > 0 ? n : 1);
}
