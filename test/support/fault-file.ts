// A BlockFile that fails on cue, as SQLite's test_vfs.c does: the Nth I/O that can fail with
// the chosen error fails, once (transient) or from then on (persistent). It fails the way
// NodeFile fails (an IoError carrying the errno, wrapping a Node-style error), so the engine
// sees exactly what a real EIO or ENOSPC from the host would give it.
import type { BlockFile, FileStore } from '../../src/io/block-file.js';
import { wrapIoError } from '../../src/base/errors.js';

export type FaultOp = 'read' | 'write' | 'flush' | 'truncate';
export type FaultCode = 'EIO' | 'ENOSPC';

export interface FaultPlan {
  /** 1-based: which of the I/O points that can fail with `code` fails first. */
  at: number;
  code: FaultCode;
  /** Transient: only that one fails. Persistent: every later eligible one fails too. */
  persistent: boolean;
}

/** Every operation can fail with EIO; only those that need space can run out of it. */
const CAN_FAIL: Record<FaultCode, ReadonlySet<FaultOp>> = {
  EIO: new Set<FaultOp>(['read', 'write', 'flush', 'truncate']),
  ENOSPC: new Set<FaultOp>(['write', 'flush', 'truncate']),
};

const ERRNO: Record<FaultCode, number> = { EIO: -5, ENOSPC: -28 };

export interface FiredFault { op: FaultOp; point: number; offset?: number }

export class FaultFile implements BlockFile {
  /** I/O points seen so far, counting only operations that can fail with the plan's code. */
  points = 0;
  readonly fired: FiredFault[] = [];

  constructor(readonly inner: BlockFile, private readonly plan: FaultPlan | null, private readonly countFor: FaultCode = plan?.code ?? 'EIO') {}

  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }

  async read(buf: Uint8Array, offset: number): Promise<number> {
    this.maybeFail('read', offset);
    return this.inner.read(buf, offset);
  }
  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.maybeFail('write', offset);
    return this.inner.write(buf, offset);
  }
  async flush(): Promise<void> {
    this.maybeFail('flush');
    return this.inner.flush();
  }
  async truncate(size: number): Promise<void> {
    this.maybeFail('truncate', size);
    return this.inner.truncate(size);
  }
  size(): Promise<number> { return this.inner.size(); }
  close(): Promise<void> { return this.inner.close(); }

  private maybeFail(op: FaultOp, offset?: number): void {
    if (!CAN_FAIL[this.countFor].has(op)) return;
    const point = ++this.points;
    const plan = this.plan;
    if (!plan || point < plan.at || (point > plan.at && !plan.persistent)) return;
    this.fired.push({ op, point, offset });
    const cause = Object.assign(new Error(`${plan.code}: injected ${op} fault`), { code: plan.code, errno: ERRNO[plan.code], syscall: op });
    throw wrapIoError(op, this.path, offset, cause);
  }
}

/** A store that hands out `file` for `path` and defers everything else to `base`. */
export function storeWith(base: FileStore, path: string, file: BlockFile): FileStore {
  return {
    open: (p, mode) => (p === path ? Promise.resolve(file) : base.open(p, mode)),
    create: (p) => base.create(p),
    resolveBacking: (p, name) => base.resolveBacking(p, name),
    identity: (p) => base.identity(p),
  };
}

/**
 * A BlockFile that fails one chosen read or write and delays others by real time, and counts
 * what is in flight and what was ever issued: to see that a request that failed in one of its
 * parts rejects only once none of its I/O is in flight, and that nothing of it lands later.
 * A delayed write reaches the inner file only when its delay is over, as a straggler would.
 */
export class SteeredFile implements BlockFile {
  inFlight = 0;
  /** Reads and writes issued so far. */
  issued = 0;
  readonly fired: FiredFault[] = [];
  /** The first read or write this accepts fails with EIO (once), after its delay. */
  failWhen: ((op: 'read' | 'write', offset: number, length: number) => boolean) | null = null;
  /** Milliseconds a read or write takes; 0 completes it as the inner file does. */
  delayOf: (op: 'read' | 'write', offset: number, length: number) => number = () => 0;

  constructor(readonly inner: BlockFile) {}

  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }

  read(buf: Uint8Array, offset: number): Promise<number> {
    return this.steer('read', offset, buf.length, () => this.inner.read(buf, offset));
  }
  write(buf: Uint8Array, offset: number): Promise<void> {
    return this.steer('write', offset, buf.length, () => this.inner.write(buf, offset));
  }
  flush(): Promise<void> { return this.inner.flush(); }
  size(): Promise<number> { return this.inner.size(); }
  truncate(size: number): Promise<void> { return this.inner.truncate(size); }
  close(): Promise<void> { return this.inner.close(); }

  private async steer<T>(op: 'read' | 'write', offset: number, length: number, run: () => Promise<T>): Promise<T> {
    this.inFlight++;
    this.issued++;
    try {
      const fails = this.fired.length === 0 && this.failWhen !== null && this.failWhen(op, offset, length);
      if (fails) this.fired.push({ op, point: this.issued, offset });
      const ms = this.delayOf(op, offset, length);
      if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
      if (fails) {
        const cause = Object.assign(new Error(`EIO: injected ${op} fault`), { code: 'EIO', errno: ERRNO.EIO, syscall: op });
        throw wrapIoError(op, this.path, offset, cause);
      }
      return await run();
    } finally {
      this.inFlight--;
    }
  }
}

/** A store that hands out the given files for their paths and defers everything else to `base`. */
export function storeWithFiles(base: FileStore, files: ReadonlyMap<string, BlockFile>): FileStore {
  return {
    open: (p, mode, options) => (files.has(p) ? Promise.resolve(files.get(p)!) : base.open(p, mode, options)),
    create: (p, options) => base.create(p, options),
    resolveBacking: (p, name) => base.resolveBacking(p, name),
    identity: (p) => base.identity(p),
  };
}
