// Which tool `qed` is standing in for. Installed under the name qemu-img or qemu-io (a
// symlink, as busybox is installed), it takes that tool's arguments and prefixes its error
// lines as that tool does ("qemu-io: ..."), so scripts written against QEMU's tools run
// unchanged; under its own name its lines start "qed: <command>: ".
import { basename } from 'node:path';

export type Persona = 'qed' | 'qemu-img' | 'qemu-io';

let persona: Persona = 'qed';

export function detectPersona(scriptPath: string | undefined): Persona {
  const name = basename(scriptPath ?? '');
  persona = name === 'qemu-img' || name === 'qemu-io' ? name : 'qed';
  return persona;
}

export function currentPersona(): Persona {
  return persona;
}

/** The start of an error line: "qemu-io: ", or "qed: io: " under our own name. */
export function errorPrefix(command: string): string {
  return persona === 'qed' ? `qed: ${command}: ` : `${persona}: `;
}
