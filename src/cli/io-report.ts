// qemu-io's report lines: the transfer summary with its rate, and read -v's hexdump.
import { cvtstr } from './sizes.js';

/** qemu-io's timestr: "00.01 sec" under a second, "H:MM:SS.ss" above (and always with -C). */
function timestr(seconds: number, fixed: boolean): string {
  const whole = Math.floor(seconds);
  const frac = seconds - whole;
  if (!fixed && whole === 0) return `${frac.toFixed(2).padStart(5, '0')} sec`;
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  return `${h}:${String(m).padStart(2, '0')}:${((whole % 60) + frac).toFixed(2).padStart(5, '0')}`;
}

/** "<verb> N/N bytes at offset O" and the rate line, or with -C one comma-separated line. */
export function stats(verb: string, offset: number, length: number, seconds: number, parsable: boolean): string {
  const t = Math.max(seconds, 1e-9);
  if (parsable) return `${length},1,${timestr(seconds, true)},${(length / t).toFixed(3)},${(1 / t).toFixed(3)}\n`;
  return `${verb} ${length}/${length} bytes at offset ${offset}\n`
    + `${cvtstr(length)}, 1 ops; ${timestr(seconds, false)} (${cvtstr(length / t)}/sec and ${(1 / t).toFixed(4)} ops/sec)\n`;
}

export function hexdump(buf: Uint8Array, offset: number): string {
  let text = '';
  for (let i = 0; i < buf.length; i += 16) {
    const row = buf.subarray(i, i + 16);
    const bytes = [...row].map((b) => b.toString(16).padStart(2, '0') + ' ').join('');
    // qemu-io's dump_buffer shows isalnum() characters only.
    const ascii = [...row].map((b) => (isAlnum(b) ? String.fromCharCode(b) : '.')).join('');
    text += `${(offset + i).toString(16).padStart(8, '0')}:  ${bytes} ${ascii}\n`;
  }
  return text;
}

function isAlnum(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
}
