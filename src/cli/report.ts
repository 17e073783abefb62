// The one place the CLI turns an error into a line on stderr and an exit code.
import { QedError, UsageError, printable } from '../base/errors.js';
import { currentPersona } from './persona.js';
import { qemuWording } from './qemu-wording.js';

/** A missing argument or option: the error line is followed by the command's usage. */
export class MissingArgument extends UsageError {}

/** How a command's action runs: the wrapper maps a thrown error to a message and exit code. */
export type RunCommand = (name: string, file: string | undefined, job: () => Promise<number>) => Promise<void>;

let debug = false;
export function setDebug(on: boolean): void { debug = on; }
export function isDebug(): boolean { return debug; }

/** One line: "qed: <command>: <file>: <what went wrong>"; the stack only with --debug. */
export function reportError(command: string, err: unknown, file?: string): number {
  if (currentPersona() !== 'qed') {
    // As qemu-img/qemu-io: "qemu-img: <QEMU's words>", the file only where QEMU names it.
    process.stderr.write(`${currentPersona()}: ${printable(qemuWording(err))}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
  const where = (err instanceof QedError && err.path) ? err.path : file;
  // Messages may quote what an image holds (a backing name): never let it break the line or drive the terminal.
  const message = printable(err instanceof Error ? err.message : String(err));
  const prefix = ['qed', command, where === undefined ? undefined : printable(where)].filter((p) => p !== undefined && p !== '').join(': ');
  process.stderr.write(`${prefix}: ${message}\n`);
  if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return 1;
}

export function writeOut(text: string): void {
  process.stdout.write(text);
}
