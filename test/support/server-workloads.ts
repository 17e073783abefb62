// Crash-test workloads that write through `qed serve`'s NBD server: the device under test is
// exported by an in-process server and several clients connect to it at once (multi-conn),
// writing, writing with FUA, zeroing (with FUA and NO_HOLE too) and flushing on different
// connections, many requests in flight. Each request is logged on the crash clock when the
// client sends it and when its reply arrives, so the explorer holds the server to what it
// advertises: a FUA request is durable once answered, and a FLUSH on any connection makes
// durable every write answered on any connection before it was sent.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startNbdServer } from '../../src/nbd/server/server.js';
import { CMD, CMD_FLAG, NbdRawClient, type CommandResult } from './nbd-raw-client.js';
import { patternBytes, type Random } from './crash-random.js';
import type { GuestRecorder } from './guest-log.js';
import type { Workload } from './crash-workload.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function ok(r: CommandResult, what: string): void {
  if (r.error !== 0 || r.violations.length > 0) throw new Error(`workload: ${what} failed over NBD: error ${r.error} ${r.violations.join('; ')} ${r.messages.join('; ')}`);
}

/**
 * A client whose requests may be in flight together: each is sent at once, and replies are
 * collected one at a time in the order sent (the raw client reads one reply at a time; one that
 * arrives early waits parked). A request counts as acknowledged when its reply is collected:
 * never earlier than the server answered, so the durability judged is never more than promised.
 */
class PipelinedClient {
  private turn: Promise<unknown> = Promise.resolve();
  constructor(readonly raw: NbdRawClient) {}
  async command(type: number, flags: number, offset = 0, length = 0, payload?: Buffer): Promise<void> {
    const cookie = await this.raw.request({ type, flags, offset, length, payload, wait: false });
    const collected = this.turn.then(() => this.raw.collect(cookie));
    this.turn = collected.catch(() => undefined);
    ok(await collected, `command ${type}`);
  }
}

/** One client's turn: a write (FUA or not), a zero write, or a FLUSH. */
async function step(g: GuestRecorder, c: PipelinedClient, rng: Random, hot: number): Promise<void> {
  const roll = rng.next();
  const sectors = 1 + rng.int(16);
  const offset = rng.int(Math.min(hot, g.size) / 512 - sectors) * 512;
  const fua = rng.chance(0.35);
  if (roll < 0.15) {
    await g.flushVia(() => c.command(CMD.FLUSH, 0));
  } else if (roll < 0.3) {
    const flags = (fua ? CMD_FLAG.FUA : 0) | (rng.chance(0.3) ? CMD_FLAG.NO_HOLE : 0);
    await g.writeVia(() => c.command(CMD.WRITE_ZEROES, flags, offset, sectors * 512), offset, sectors * 512, null, fua);
  } else {
    const data = Buffer.from(patternBytes(sectors * 512, rng.int(1 << 30)));
    await g.writeVia(() => c.command(CMD.WRITE, fua ? CMD_FLAG.FUA : 0, offset, data.length, data), offset, data.length, data, fua);
  }
}

function overNbd(name: string, shape: Pick<Workload, 'clusterSize' | 'tableSize' | 'size' | 'backing'>, connections: number, steps: number, hot: number): Workload {
  return {
    name, ...shape,
    async run(g, rng) {
      const dir = mkdtempSync('/tmp/qed-crash-nbd-');
      const path = join(dir, 'nbd.sock');
      const server = await startNbdServer({
        exports: [{ name: 'disk', description: '', device: g.device }], listen: { kind: 'unix', path },
        maxClients: connections,
      });
      const clients: NbdRawClient[] = [];
      try {
        for (let i = 0; i < connections; i++) {
          const c = await NbdRawClient.unix(path);
          clients.push(c);
          await c.negotiate({ name: 'disk' });
        }
        // Every connection runs its own sequence at once; some send several requests before waiting.
        await Promise.all(clients.map(async (raw) => {
          const c = new PipelinedClient(raw);
          for (let i = 0; i < steps;) {
            const batch = rng.chance(0.3) ? 2 + rng.int(3) : 1;
            await Promise.all(Array.from({ length: batch }, () => step(g, c, rng, hot)));
            i += batch;
          }
        }));
      } finally {
        for (const c of clients) c.destroy();
        await server.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

export const serverWorkloads: Workload[] = [
  overNbd('three NBD connections, 4 KiB clusters', { clusterSize: 4 * KiB, tableSize: 2, size: 1 * MiB }, 3, 10, 1 * MiB),
  overNbd('three NBD connections over a raw backing file', { clusterSize: 4 * KiB, tableSize: 2, size: 1 * MiB, backing: { format: 'raw', size: 1 * MiB } }, 3, 10, 512 * KiB),
  overNbd('four NBD connections, 64 KiB clusters, writes crowded into a few clusters', { clusterSize: 64 * KiB, tableSize: 1, size: 4 * MiB }, 4, 8, 256 * KiB),
];
