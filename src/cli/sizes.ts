// Sizes as qemu-img and qemu-io read and print them.
import { UsageError } from '../base/errors.js';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

/** "64k", "1.5G", "512", "0x1000": qemu's strtosz (binary suffixes; bare numbers are bytes). */
export function parseSize(text: string, what = 'size'): number {
  const trimmed = text.trim();
  const hexMatch = /^0x([0-9a-f]+)$/i.exec(trimmed);
  if (hexMatch) return checked(parseInt(hexMatch[1]!, 16), text, what);
  const m = /^(\d+(?:\.\d*)?|\.\d+)\s*([bkmgtpe]?)(?:i?b)?$/i.exec(trimmed);
  if (!m) throw new UsageError(`invalid ${what} '${text}': expected a number with an optional k, M, G, T suffix`);
  const value = parseFloat(m[1]!) * UNITS[m[2]!.toLowerCase()]!;
  return checked(Math.round(value), text, what);
}

function checked(value: number, text: string, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new UsageError(`invalid ${what} '${text}': out of range`);
  return value;
}

/** qemu's size_to_str: "1 GiB", "580 KiB", "0.977 KiB" (three significant digits). */
export function sizeToStr(bytes: number): string {
  const suffixes = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'];
  const scaled = bytes / (1000 / 1024);
  const exponent = scaled === 0 ? 0 : Math.floor(Math.log2(scaled)) + 1; // frexp's exponent
  const i = Math.max(0, Math.min(6, Math.floor((exponent - 1) / 10)));
  return `${formatG(bytes / 2 ** (i * 10), 3)} ${suffixes[i]}B`;
}

/** C's %.{precision}g. */
export function formatG(value: number, precision: number): string {
  if (value === 0) return '0';
  const exp = Math.floor(Math.log10(Math.abs(Number(value.toPrecision(precision)))));
  if (exp < -4 || exp >= precision) {
    const [mantissa, e] = value.toExponential(precision - 1).split('e');
    const n = Number(e);
    return `${stripZeros(mantissa!)}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  return stripZeros(value.toFixed(Math.max(0, precision - 1 - exp)));
}

function stripZeros(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** qemu-io's cvtstr (7.2): "4 KiB", "1.953 KiB", "1000 bytes": three decimals, ".000" trimmed. */
export function cvtstr(value: number): string {
  const units: Array<[number, string]> = [[2 ** 60, ' EiB'], [2 ** 50, ' PiB'], [2 ** 40, ' TiB'], [2 ** 30, ' GiB'], [2 ** 20, ' MiB'], [2 ** 10, ' KiB']];
  for (const [size, suffix] of units) {
    if (value >= size) return trimFixed(value / size) + suffix;
  }
  return trimFixed(value) + ' bytes';
}

function trimFixed(value: number): string {
  const s = fixed3(value);
  return s.endsWith('.000') ? s.slice(0, -4) : s;
}

/** printf("%.3f"): exact binary ties round to even (976.5625 → "976.562"), unlike toFixed. */
function fixed3(value: number): string {
  const scaled = value * 1000;
  const floor = Math.floor(scaled);
  if (scaled - floor === 0.5 && Number.isFinite(scaled) && scaled < 2 ** 52) {
    const even = floor % 2 === 0 ? floor : floor + 1;
    return (even / 1000).toFixed(3);
  }
  return value.toFixed(3);
}

/** "1 GiB (1073741824 bytes)" as qemu-img info prints virtual sizes. */
export function sizeWithBytes(bytes: number): string {
  return `${sizeToStr(bytes)} (${bytes} bytes)`;
}
