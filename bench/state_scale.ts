/**
 * Scale of state: many connections holding many locks, the server's memory,
 * and how long it takes to release everything when they all disconnect.
 *
 * @module
 */

import { ELockClient } from "../mod.ts";
import { encoder, type MemoryProbe, now, type Target } from "./measure.ts";
import { connectRaw, type RawConnection } from "./raw_socket.ts";
import { round } from "./stats.ts";

/** Many connections holding many locks. */
export interface StateScaleOptions {
  readonly connections: number;
  readonly locksPerConnection: number;
  /** Connections opened at once while connecting. */
  readonly batch: number;
  /** How long to wait after everything is released before the last memory sample, ms (default 0). */
  readonly settleMs?: number;
}

/** What {@linkcode measureStateScale} found. */
export interface StateScaleFigures {
  readonly connections: number;
  readonly locksPerConnection: number;
  /** Server RSS before, with every connection open, and with every lock held: the total (bytes). */
  readonly rssBaseline: number;
  readonly rssConnected: number;
  readonly rssLocked: number;
  /** Server RSS once every connection has closed and everything is released (bytes). */
  readonly rssReleased: number;
  /** (connected − baseline) ÷ connections, bytes; noise can make a tiny run's delta ≤ 0. */
  readonly rssPerConnection: number;
  /** (locked − connected) ÷ locks, bytes. */
  readonly rssPerLock: number;
  /** The same from the server's JS heap. */
  readonly heapPerConnection: number;
  readonly heapPerLock: number;
  /** Time to open every connection (each sends `set_timeout 0`), ms. */
  readonly connectMs: number;
  /** Time to take every lock (each connection pipelines its locks), ms. */
  readonly lockMs: number;
  /** From closing every connection to the server reporting 0 clients and 0 locks, ms. */
  readonly releaseMs: number;
}

/**
 * Opens `connections` raw connections (release timeout 0), takes
 * `locksPerConnection` locks on each, then closes them all and times how
 * long the server takes to release everything (polling `stats`); the
 * server's memory is sampled before, connected, locked and after release.
 */
export async function measureStateScale(
  target: Target,
  memory: MemoryProbe,
  options: StateScaleOptions,
): Promise<StateScaleFigures> {
  const { connections, locksPerConnection } = options;
  const monitor = await ELockClient.connect({ host: target.host, port: target.port });
  const raws: RawConnection[] = [];
  try {
    // Sessions and locks of earlier measurements (the smoke test shares its server).
    const before = await monitor.stats();
    const base = await memory();
    const setTimeout0 = encoder.encode("set_timeout 0\n");
    const t0 = now();
    for (let i = 0; i < connections; i += options.batch) {
      const batch = Math.min(options.batch, connections - i);
      const opened = await Promise.all(
        Array.from({ length: batch }, async () => {
          const raw = await connectRaw(target.host, target.port);
          raws.push(raw);
          await raw.roundTrip(setTimeout0, 1);
          return raw;
        }),
      );
      if (opened.length !== batch) throw new Error("state scale: a connection is missing");
    }
    const connectMs = now() - t0;
    const connected = await memory();
    const tag = Math.random().toString(36).slice(2, 8);
    const t1 = now();
    for (let i = 0; i < raws.length; i += options.batch) {
      await Promise.all(
        raws.slice(i, i + options.batch).map((raw, j) => {
          let text = "";
          for (let k = 0; k < locksPerConnection; k++) text += `lock s${tag}-${i + j}-${k}\n`;
          return raw.roundTrip(encoder.encode(text), locksPerConnection);
        }),
      );
    }
    const lockMs = now() - t1;
    const stats = await monitor.stats();
    if (stats.locks - before.locks !== connections * locksPerConnection) {
      throw new Error(
        `state scale: the server holds ${stats.locks - before.locks} new locks, ` +
          `not ${connections * locksPerConnection}`,
      );
    }
    const locked = await memory();
    const t2 = now();
    for (const raw of raws.splice(0)) raw.close();
    for (;;) {
      const { clients, locks } = await monitor.stats();
      if (clients <= before.clients && locks <= before.locks) break;
      if (now() - t2 > 120_000) throw new Error("state scale: locks not released within 120 s");
    }
    const releaseMs = now() - t2;
    if ((options.settleMs ?? 0) > 0) {
      await new Promise((resolve) => setTimeout(resolve, options.settleMs));
    }
    const released = await memory();
    const lockCount = connections * locksPerConnection;
    return {
      connections,
      locksPerConnection,
      rssBaseline: base.rss,
      rssConnected: connected.rss,
      rssLocked: locked.rss,
      rssReleased: released.rss,
      rssPerConnection: round((connected.rss - base.rss) / connections),
      rssPerLock: round((locked.rss - connected.rss) / lockCount),
      heapPerConnection: round((connected.heapUsed - base.heapUsed) / connections),
      heapPerLock: round((locked.heapUsed - connected.heapUsed) / lockCount),
      connectMs: round(connectMs),
      lockMs: round(lockMs),
      releaseMs: round(releaseMs),
    };
  } finally {
    for (const raw of raws) raw.close();
    await monitor.close();
  }
}
