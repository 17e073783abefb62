// Parsing of qemu-img's -o "key=value,key=value" and -f/-F format names.
import { UsageError } from '../base/errors.js';
import { isImageFormat, type ImageFormat } from '../format/probe.js';

export function parseFormat(name: string | undefined, what = 'format'): ImageFormat | undefined {
  if (name === undefined) return undefined;
  if (!isImageFormat(name)) throw new UsageError(`unknown ${what} '${name}': supported formats are qed and raw`);
  return name;
}

/** "a=1,b=2" → Map; commas inside values are written ",," as qemu-img allows. */
export function parseKeyValues(text: string, allowed: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  const parts = text.replace(/,,/g, '\u0000').split(',').map((p) => p.replace(/\u0000/g, ','));
  for (const part of parts) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if (!allowed.includes(key)) {
      throw new UsageError(`invalid parameter '${key}' (supported: ${allowed.join(', ')})`);
    }
    out.set(key, value);
  }
  return out;
}

export type OutputKind = 'human' | 'json';

export function parseOutput(kind: string): OutputKind {
  if (kind !== 'human' && kind !== 'json') throw new UsageError(`--output must be human or json, not '${kind}'`);
  return kind;
}
