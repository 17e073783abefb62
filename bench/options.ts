// Options of the bench scripts: `--name=value` arguments over `BENCH_NAME` environment
// variables; anything not in `known` is refused, so a typo never silently runs the default.

export function readBenchOptions(known: readonly string[]): Map<string, string> {
  const opts = new Map<string, string>();
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('BENCH_') && v !== undefined) opts.set(k.slice(6).toLowerCase().replace(/_/g, '-'), v);
  }
  for (const arg of process.argv.slice(2)) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new Error(`unknown argument '${arg}'`);
    opts.set(m[1]!, m[2] ?? '1');
  }
  for (const k of opts.keys()) if (!known.includes(k)) throw new Error(`unknown option '${k}'`);
  return opts;
}

/** A flag given without a value, or with any value but 0. */
export function isSet(opts: Map<string, string>, name: string): boolean {
  return opts.has(name) && opts.get(name) !== '0';
}
