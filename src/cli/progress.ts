// A progress bar for -p: drawn only when stdout is a terminal, so pipes never get garbage.
import { createRequire } from 'node:module';
import type * as CliProgress from 'cli-progress';

/** Loaded only when a bar is drawn: most runs never need it, and every run pays for an import at start-up. */
const load = createRequire(import.meta.url);

export interface Progress { update(done: number, total: number): void; stop(): void }

export function startProgress(enabled: boolean, label: string): Progress {
  if (!enabled || !process.stdout.isTTY) return { update() { /* not a terminal */ }, stop() { /* nothing drawn */ } };
  const cliProgress = load('cli-progress') as typeof CliProgress;
  const bar = new cliProgress.SingleBar({
    format: `${label} [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB | {duration_formatted}`,
    stream: process.stdout, hideCursor: true, clearOnComplete: false,
  }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update(done, total) {
      const payload = { doneMiB: (done / 2 ** 20).toFixed(1), totalMiB: (total / 2 ** 20).toFixed(1) };
      if (!started) { bar.start(Math.max(total, 1), done, payload); started = true; } else bar.update(done, payload);
    },
    stop() { if (started) bar.stop(); },
  };
}
