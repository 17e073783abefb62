// Holding an image open in another process, for the locking tests (test/cli/locking,
// test/interop/locking-agrees):
//
//   node dist/test/support/hold-image.js IMAGE read-write|read-only|force-share
//
// The worker opens IMAGE through the library (its backing chain included), says "ready" on
// stdout, and keeps it open until its stdin closes. holdImage() and holdWithQemuIo() start a
// holder and return once it holds the image; release() closes it and waits for the exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openDevice } from '../../src/ops/open.js';
import '../../src/io/node-default.js'; // local files as the default store, as the package's Node entry sets up

export type HoldMode = 'read-write' | 'read-only' | 'force-share';

/** Give up by itself if nobody releases it, so a broken test cannot leave it running. */
const SELF_DESTRUCT_MS = 60_000;
const WORKER = fileURLToPath(import.meta.url);

export interface Holder {
  /** Close the image and wait for the holder to exit. */
  release(): Promise<void>;
}

/** Hold `image` open in a qed worker process. */
export function holdImage(image: string, mode: HoldMode): Promise<Holder> {
  return startHolder(spawn(process.execPath, [WORKER, image, mode], { stdio: ['pipe', 'pipe', 'pipe'] }), /^ready$/m);
}

/**
 * Hold `image` open in an interactive qemu-io (read-write unless `readOnly`), which keeps it
 * until its stdin closes. It prompts only once the open succeeded; the answer to `length`
 * after the prompt ("qemu-io> 1 MiB") is the sign.
 */
export function holdWithQemuIo(image: string, options: { readOnly?: boolean; format?: string; cwd?: string } = {}): Promise<Holder> {
  const args = ['-f', options.format ?? 'qed', ...(options.readOnly ? ['-r'] : []), image];
  const child = spawn('qemu-io', args, { cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin!.write('length\n');
  return startHolder(child, /qemu-io> \d/);
}

function startHolder(child: ChildProcess, ready: RegExp): Promise<Holder> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (ready.test(out)) resolve({ release: async () => { child.stdin!.end(); await exited; } });
    });
    child.once('exit', (code) => reject(new Error(`image holder exited (${code}) before holding the image\n--- stdout\n${out}--- stderr\n${err}`)));
    child.once('error', reject);
  });
}

async function main(image: string, mode: HoldMode): Promise<void> {
  setTimeout(() => process.exit(3), SELF_DESTRUCT_MS).unref();
  const device = await openDevice(image, { readOnly: mode !== 'read-write', forceShare: mode === 'force-share' });
  writeSync(1, 'ready\n');
  process.stdin.resume();
  process.stdin.once('end', () => {
    device.close().then(() => process.exit(0), () => process.exit(2));
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv[2]!, process.argv[3] as HoldMode).catch((err: unknown) => {
    process.stderr.write(`hold-image: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
