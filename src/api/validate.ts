// Argument checks at the package boundary: JavaScript callers can pass anything, and every
// failure of the library must be one of its own errors (UsageError), never a TypeError from
// deep inside.
import { UsageError, throwIfAborted, withPath } from '../base/errors.js';
import type { ImageFormat } from '../format/probe.js';

export function requirePath(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new UsageError(`${what} must be a non-empty string, not ${describe(value)}`);
  return value;
}

/** Run `job` for the file `path` names: a bad path is refused first, and every error names the file. */
export async function guarded<T>(path: unknown, what: string, job: () => Promise<T>): Promise<T> {
  const file = requirePath(path, what);
  try {
    return await job();
  } catch (err) {
    throw withPath(err, file);
  }
}

/** The options object itself: undefined means none. */
export function optionsObject<T extends object>(value: T | undefined, what: string): Partial<T> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`${what} options must be an object, not ${describe(value)}`);
  return value;
}

export function optionalFormat(value: unknown, what: string): ImageFormat | undefined {
  if (value === undefined) return undefined;
  if (value !== 'qed' && value !== 'raw') throw new UsageError(`${what} must be 'qed' or 'raw', not ${describe(value)}`);
  return value;
}

export function optionalBytes(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new UsageError(`${what} must be a whole number of bytes, not ${describe(value)}`);
  }
  return value;
}

/** A whole number of at least 1 (requests in flight, bytes per chunk). */
export function optionalCount(value: unknown, what: string): number | undefined {
  const count = optionalBytes(value, what);
  if (count === 0) throw new UsageError(`${what} must be at least 1`);
  return count;
}

export function optionalBoolean(value: unknown, what: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new UsageError(`${what} must be true or false, not ${describe(value)}`);
  return value;
}

export function optionalFunction<F extends (...args: never[]) => unknown>(value: unknown, what: string): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw new UsageError(`${what} must be a function, not ${describe(value)}`);
  return value as F;
}

/** A signal that may already have fired: refuse before any work starts. */
export function optionalSignal(value: unknown, what: string): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (typeof AbortSignal === 'undefined' || !(value instanceof AbortSignal)) throw new UsageError(`signal must be an AbortSignal, not ${describe(value)}`);
  throwIfAborted(value, what);
  return value;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return typeof value;
}
