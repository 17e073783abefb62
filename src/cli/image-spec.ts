// The ways QEMU's tools let an image be named besides a plain path: the `file:` protocol
// prefix, `json:{...}` pseudo-filenames and --image-opts "driver=qed,file.filename=..."
// strings. All come down to a path, a format, and a few open options; any driver or option
// we do not have is refused by name.
import { UsageError, UnsupportedError } from '../base/errors.js';
import type { ImageFormat } from '../format/probe.js';

export interface ImageSpec {
  path: string;
  format?: ImageFormat;
  readOnly?: boolean;
  forceShare?: boolean;
  /** 'backing': null: open the image without its backing file. */
  noBacking?: boolean;
  /** locking=off: take no image locks. */
  lock?: boolean;
  /** A protocol driver named alone (driver=file, host_device, host_cdrom): raw bytes, with its checks. */
  protocol?: 'file' | 'host_device' | 'host_cdrom';
  /** The image's bytes are the guest content of this other image, not a file. */
  container?: ImageSpec;
}

/** A command-line image name: `json:{...}`, `file:PATH`, or a path. */
export function parseImageName(name: string): ImageSpec {
  if (name.startsWith('json:')) return fromOptions(flattenJson(name.slice(5)));
  if (name.startsWith('file:')) return { path: plainPath(name.slice(5)) };
  return { path: name };
}

/**
 * A path given with the file: prefix, as QEMU shows it: "./" goes before one whose first
 * component holds a colon (image:top.qed), which would otherwise read as a protocol name.
 */
function plainPath(path: string): string {
  const colon = path.indexOf(':');
  const slash = path.indexOf('/');
  return colon >= 0 && (slash < 0 || colon < slash) ? `./${path}` : path;
}

/**
 * An image argument of a qemu-img command: a name (json:, file: or a path) or, with
 * --image-opts, an option string. Open options the command cannot apply are refused.
 */
export function imageArgument(name: string, imageOpts: boolean, format: ImageFormat | undefined): { path: string; format?: ImageFormat } {
  if (imageOpts && format !== undefined) throw new UsageError('--image-opts and -f are mutually exclusive');
  const spec = imageOpts ? parseImageOpts(name) : parseImageName(name);
  for (const key of ['readOnly', 'forceShare', 'noBacking', 'container', 'protocol'] as const) {
    if (spec[key] !== undefined) throw new UnsupportedError(`image option '${key}' for this command`);
  }
  return { path: spec.path, format: format ?? spec.format };
}

/** An --image-opts string: "driver=qed,file.driver=file,file.filename=PATH" (",," is a comma). */
export function parseImageOpts(text: string): ImageSpec {
  const options = new Map<string, string>();
  for (const part of text.replace(/,,/g, '\u0000').split(',')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    // QEMU's implied key: a bare first word names the file.
    const [key, value] = eq < 0 ? ['filename', part] : [part.slice(0, eq), part.slice(eq + 1)];
    options.set(key, value.replace(/\u0000/g, ','));
  }
  return fromOptions(options);
}

function fromOptions(options: Map<string, string | null>): ImageSpec {
  const spec = parseNode(options, '');
  const left = [...options.keys()];
  if (left.length > 0) throw new UnsupportedError(`image option '${left[0]}'`);
  return spec;
}

/** The node whose options start with `prefix`: a format over a file, or over another image. */
function parseNode(options: Map<string, string | null>, prefix: string): ImageSpec {
  const take = (key: string): string | null | undefined => {
    const value = options.get(prefix + key);
    options.delete(prefix + key);
    return value;
  };
  const driver = take('driver');
  const spec: Partial<ImageSpec> = {};
  let filenameKey = 'filename';
  if (driver === 'qed' || driver === 'raw') {
    spec.format = driver;
    filenameKey = 'file.filename';
    const fileDriver = options.get(`${prefix}file.driver`);
    if (fileDriver === 'qed' || fileDriver === 'raw') {
      // An image stored inside another image (qemu-iotests 072 nests QED in QED).
      spec.container = parseNode(options, `${prefix}file.`);
      spec.path = spec.container.path;
    } else {
      take('file.driver');
      if (fileDriver !== undefined && fileDriver !== 'file') throw new UnsupportedError(`protocol driver '${fileDriver}' (we have file, qed and raw)`);
      const fileName = take('file');
      if (typeof fileName === 'string') spec.path = fileName;
      const locking = take('file.locking');
      if (locking !== undefined) spec.lock = lockingMode(locking);
    }
  } else if (driver === 'file' || driver === 'host_device' || driver === 'host_cdrom') {
    spec.format = 'raw';
    spec.protocol = driver;
    const locking = take('locking');
    if (locking !== undefined) spec.lock = lockingMode(locking);
  } else if (driver === undefined || driver === null) {
    throw new UsageError("the image options name no 'driver'");
  } else {
    throw new UnsupportedError(`driver '${driver}' (we have qed, raw, file and host_device)`);
  }
  const filename = take(filenameKey);
  if (typeof filename === 'string') spec.path = filename;
  const readOnly = take('read-only');
  if (readOnly !== undefined) spec.readOnly = onOff(readOnly, 'read-only');
  const forceShare = take('force-share');
  if (forceShare !== undefined) spec.forceShare = onOff(forceShare, 'force-share');
  if (options.has(`${prefix}backing`)) {
    if (take('backing') !== null) throw new UnsupportedError("'backing' other than null");
    spec.noBacking = true;
  }
  if (spec.path === undefined) throw new UsageError(`the image options name no file ('${prefix}${filenameKey}')`);
  return spec as ImageSpec;
}

/** QEMU's locking=on|off|auto; auto locks where the file system can, as ours always does. */
function lockingMode(value: string | null): boolean {
  if (value === 'on' || value === 'auto') return true;
  if (value === 'off') return false;
  throw new UsageError(`invalid value for 'locking': ${String(value)} (on, off or auto)`);
}

function onOff(value: string | null, key: string): boolean {
  if (value === 'on' || value === 'true') return true;
  if (value === 'off' || value === 'false') return false;
  throw new UsageError(`invalid value for '${key}': ${String(value)} (on or off)`);
}

/** QEMU's JSON (which also takes 'single-quoted' strings), flattened to dotted keys. */
function flattenJson(text: string): Map<string, string | null> {
  let value: unknown;
  try {
    value = JSON.parse(doubleQuoted(text));
  } catch {
    throw new UsageError(`invalid json: filename: ${text}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UsageError('a json: filename must hold an object');
  const out = new Map<string, string | null>();
  const walk = (prefix: string, node: Record<string, unknown>): void => {
    for (const [key, v] of Object.entries(node)) {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) walk(`${prefix}${key}.`, v as Record<string, unknown>);
      else if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out.set(prefix + key, v === null ? null : String(v));
      else throw new UnsupportedError(`image option '${prefix}${key}' (a list)`);
    }
  };
  walk('', value as Record<string, unknown>);
  return out;
}

/** Rewrite 'single-quoted' strings as "double-quoted" ones; double-quoted strings pass through. */
function doubleQuoted(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== "'" && c !== '"') { out += c; continue; }
    let body = '';
    for (i++; i < text.length && text[i] !== c; i++) {
      if (text[i] === '\\' && i + 1 < text.length) { body += text[i]! + text[i + 1]!; i++; continue; }
      body += text[i] === '"' ? '\\"' : text[i]!;
    }
    out += `"${c === "'" ? body.replace(/\\'/g, "'") : body}"`;
  }
  return out;
}
