/**
 * The measurements, runtime-neutral: each runs in the process it is called
 * in (a per-runtime worker of bench/run.ts, or the smoke test) against a
 * server given by port.
 *
 * @module
 */

import { defaultTransport, ELockClient } from "../mod.ts";
import { connectRaw, type RawConnection } from "./raw_socket.ts";
import { median, percentileOf, round, Samples } from "./stats.ts";

/** A server to measure against. */
export interface Target {
  readonly host: string;
  readonly port: number;
}

/** Where the server's memory can be read. */
export type MemoryProbe = () => Promise<MemorySample>;

/** The memory of the server process, in bytes. */
export interface MemorySample {
  readonly rss: number;
  readonly heapUsed: number;
}

/** Ops/s and latency of one loop. */
export interface LoopFigures {
  /** Commands answered per second (a lock/unlock pair is two). */
  readonly opsPerSec: number;
  /** Median latency of one command, ms. */
  readonly p50Ms: number;
  /** 99th percentile latency of one command, ms. */
  readonly p99Ms: number;
}

const encoder = new TextEncoder();
const now = () => performance.now();

/** Client vs raw on one connection each, interleaved rounds. */
export interface OverheadOptions {
  readonly rounds: number;
  readonly roundMs: number;
  readonly warmupMs: number;
}

/** What {@linkcode measureOverhead} found (medians over rounds). */
export interface OverheadFigures {
  readonly rounds: number;
  /** Through {@linkcode ELockClient}. */
  readonly client: LoopFigures;
  /**
   * The same bytes through the web streams of the client's default
   * transport, with no protocol or client code: the cost of the seam.
   */
  readonly transport: LoopFigures;
  /** The same bytes on a raw socket of the same API. */
  readonly raw: LoopFigures;
  /** Median over rounds of raw ops/s ÷ client ops/s (1 = no overhead). */
  readonly ratio: number;
  /** The 25th and 75th percentiles of the rounds' ratios: the spread of the noise. */
  readonly ratioP25: number;
  readonly ratioP75: number;
  /** Median over rounds of raw ops/s ÷ transport ops/s. */
  readonly transportRatio: number;
  /** The client/raw ratio of each round, in order. */
  readonly ratios: readonly number[];
}

/**
 * Sequential lock/unlock pairs through {@linkcode ELockClient}, through the
 * default transport's streams alone, and through a raw socket, writing the
 * same bytes; the three take turns in every round, in an order that
 * rotates, so that drift and noise hit them alike.
 */
export async function measureOverhead(
  target: Target,
  options: OverheadOptions,
): Promise<OverheadFigures> {
  const key = `overhead-${Math.random().toString(36).slice(2, 10)}`;
  const client = await ELockClient.connect({ host: target.host, port: target.port });
  const raw = await connectRaw(target.host, target.port);
  const streams = await defaultTransport().connect({ host: target.host, port: target.port });
  const reader = streams.readable.getReader();
  const writer = streams.writable.getWriter();
  try {
    const lock = encoder.encode(`lock ${key}\n`);
    const unlock = encoder.encode(`unlock ${key}\n`);
    const viaStreams = async (bytes: Uint8Array) => {
      await writer.write(bytes);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error("overhead: the transport's stream ended");
        if (value.includes(10)) return;
      }
    };
    type Step = (bytes: Uint8Array) => Promise<unknown>;
    const loops: Record<"client" | "transport" | "raw", Step> = {
      client: async (bytes) => {
        const ok = bytes === lock ? await client.lock(key) : await client.unlock(key);
        if (!ok) throw new Error(`overhead: ${key} refused`);
      },
      transport: viaStreams,
      raw: (bytes) => raw.roundTrip(bytes, 1),
    };
    const loop = async (step: Step, ms: number, samples: Samples | null) => {
      let ops = 0;
      const start = now();
      let end = start;
      do {
        const t0 = now();
        await step(lock);
        const t1 = now();
        await step(unlock);
        end = now();
        samples?.add(t1 - t0);
        samples?.add(end - t1);
        ops += 2;
      } while (end - start < ms);
      return ops / ((end - start) / 1000);
    };
    const names = ["client", "transport", "raw"] as const;
    for (const name of names) await loop(loops[name], options.warmupMs / names.length, null);
    const rounds: Record<(typeof names)[number], LoopFigures>[] = [];
    for (let r = 0; r < options.rounds; r++) {
      const order = names.map((_, i) => names[(i + r) % names.length]!);
      if (Math.floor(r / names.length) % 2 === 1) order.reverse();
      const round = {} as Record<(typeof names)[number], LoopFigures>;
      for (const name of order) {
        const samples = new Samples();
        round[name] = figures(await loop(loops[name], options.roundMs, samples), samples);
      }
      rounds.push(round);
    }
    const ratios = rounds.map((r) => r.raw.opsPerSec / r.client.opsPerSec);
    const sorted = [...ratios].sort((a, b) => a - b);
    return {
      rounds: rounds.length,
      client: medianFigures(rounds.map((r) => r.client)),
      transport: medianFigures(rounds.map((r) => r.transport)),
      raw: medianFigures(rounds.map((r) => r.raw)),
      ratio: round(median(ratios)),
      ratioP25: round(percentileOf(sorted, 25)),
      ratioP75: round(percentileOf(sorted, 75)),
      transportRatio: round(median(rounds.map((r) => r.raw.opsPerSec / r.transport.opsPerSec))),
      ratios: ratios.map((r) => round(r)),
    };
  } finally {
    raw.close();
    reader.releaseLock();
    writer.releaseLock();
    await streams.close();
    await client.close();
  }
}

/** Many clients at once, each on its own key. */
export interface ThroughputOptions {
  readonly clients: number;
  readonly rounds: number;
  readonly roundMs: number;
  readonly warmupMs: number;
}

/** What {@linkcode measureThroughput} found (medians over rounds). */
export interface ThroughputFigures extends LoopFigures {
  readonly clients: number;
  readonly rounds: number;
}

/** `clients` clients, each looping lock/unlock on a key of its own, all at once. */
export async function measureThroughput(
  target: Target,
  options: ThroughputOptions,
): Promise<ThroughputFigures> {
  const clients = await connectMany(target, options.clients);
  const tag = Math.random().toString(36).slice(2, 10);
  try {
    const run = async (ms: number, samples: Samples | null) => {
      const start = now();
      const counts = await Promise.all(clients.map(async (client, i) => {
        const key = `tp-${tag}-${i}`;
        let ops = 0;
        let end = start;
        do {
          const t0 = now();
          if (!await client.lock(key)) throw new Error(`throughput: ${key} not granted`);
          const t1 = now();
          await client.unlock(key);
          end = now();
          samples?.add(t1 - t0);
          samples?.add(end - t1);
          ops += 2;
        } while (end - start < ms);
        return ops;
      }));
      const total = counts.reduce((a, b) => a + b, 0);
      return total / ((now() - start) / 1000);
    };
    await run(options.warmupMs, null);
    const rounds: LoopFigures[] = [];
    for (let r = 0; r < options.rounds; r++) {
      const samples = new Samples();
      rounds.push(figures(await run(options.roundMs, samples), samples));
    }
    return { clients: options.clients, rounds: rounds.length, ...medianFigures(rounds) };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** Clients taking turns on one hot key. */
export interface ContentionOptions {
  readonly clients: number;
  readonly rounds: number;
  readonly roundMs: number;
}

/** What {@linkcode measureContention} found (medians over rounds). */
export interface ContentionFigures {
  readonly clients: number;
  readonly rounds: number;
  /** Locks granted per second. */
  readonly grantsPerSec: number;
  /** Median time from an unlock being sent to the next waiter's grant arriving, ms. */
  readonly handoffP50Ms: number;
  /** 99th percentile of that hand-off time, ms. */
  readonly handoffP99Ms: number;
}

/**
 * `clients` clients on one key, each waiting for it, unlocking at once when
 * granted and queueing again. The server serves waiters in order, so the
 * events alternate grant, unlock, grant...: the hand-off time is from an
 * unlock being sent to the next grant arriving.
 */
export async function measureContention(
  target: Target,
  options: ContentionOptions,
): Promise<ContentionFigures> {
  const clients = await connectMany(target, options.clients);
  try {
    const rounds: { grantsPerSec: number; p50: number; p99: number }[] = [];
    for (let r = 0; r < options.rounds; r++) {
      const key = `hot-${Math.random().toString(36).slice(2, 10)}`;
      const handoffs = new Samples();
      let unlockSentAt = -1;
      let grants = 0;
      let stopping = false;
      let start = 0;
      let end = 0;
      await Promise.all(clients.map(async (client) => {
        while (!stopping) {
          if (!await client.lock(key, { timeout: 30_000 })) {
            throw new Error(`contention: ${key} not granted within 30 s`);
          }
          const t = now();
          if (unlockSentAt >= 0) handoffs.add(t - unlockSentAt);
          if (start === 0) start = t;
          grants++;
          if (t - start >= options.roundMs && !stopping) {
            stopping = true;
            end = t;
          }
          unlockSentAt = now();
          await client.unlock(key);
        }
      }));
      // The first grant opens the window; every later one falls inside it.
      rounds.push({
        grantsPerSec: (grants - 1) / ((end - start) / 1000),
        p50: handoffs.percentile(50),
        p99: handoffs.percentile(99),
      });
    }
    return {
      clients: options.clients,
      rounds: rounds.length,
      grantsPerSec: round(median(rounds.map((r) => r.grantsPerSec))),
      handoffP50Ms: round(median(rounds.map((r) => r.p50))),
      handoffP99Ms: round(median(rounds.map((r) => r.p99))),
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** Many connections holding many locks. */
export interface StateScaleOptions {
  readonly connections: number;
  readonly locksPerConnection: number;
  /** Connections opened at once while connecting. */
  readonly batch: number;
}

/** What {@linkcode measureStateScale} found. */
export interface StateScaleFigures {
  readonly connections: number;
  readonly locksPerConnection: number;
  /** Server RSS before, with every connection open, and with every lock held (bytes). */
  readonly rssBaseline: number;
  readonly rssConnected: number;
  readonly rssLocked: number;
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
 * long the server takes to release everything (polling `stats`).
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
    const lockCount = connections * locksPerConnection;
    return {
      connections,
      locksPerConnection,
      rssBaseline: base.rss,
      rssConnected: connected.rss,
      rssLocked: locked.rss,
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

/** One load, run against several servers in turn. */
export interface ServerLoadOptions {
  readonly connections: number;
  readonly rounds: number;
  readonly roundMs: number;
  readonly warmupMs: number;
}

/** What {@linkcode measureServers} found for one server (medians over rounds). */
export interface ServerLoadFigures extends LoopFigures {
  readonly name: string;
  readonly rounds: number;
}

/**
 * The same load (raw connections, each looping lock/unlock on a key of its
 * own) against each server in turn, the order rotating every round.
 */
export async function measureServers(
  targets: readonly (Target & { readonly name: string })[],
  options: ServerLoadOptions,
): Promise<ServerLoadFigures[]> {
  const tag = Math.random().toString(36).slice(2, 8);
  const lock = (i: number) => encoder.encode(`lock sv${tag}-${i}\n`);
  const unlock = (i: number) => encoder.encode(`unlock sv${tag}-${i}\n`);
  const pools = await Promise.all(targets.map(async (target) => {
    const raws: RawConnection[] = [];
    for (let i = 0; i < options.connections; i++) {
      raws.push(await connectRaw(target.host, target.port));
    }
    return raws;
  }));
  try {
    const run = async (raws: RawConnection[], ms: number, samples: Samples | null) => {
      const start = now();
      const counts = await Promise.all(raws.map(async (raw, i) => {
        const l = lock(i);
        const u = unlock(i);
        let ops = 0;
        let end = start;
        do {
          const t0 = now();
          await raw.roundTrip(l, 1);
          const t1 = now();
          await raw.roundTrip(u, 1);
          end = now();
          samples?.add(t1 - t0);
          samples?.add(end - t1);
          ops += 2;
        } while (end - start < ms);
        return ops;
      }));
      return counts.reduce((a, b) => a + b, 0) / ((now() - start) / 1000);
    };
    for (const raws of pools) await run(raws, options.warmupMs, null);
    const perServer: LoopFigures[][] = targets.map(() => []);
    for (let r = 0; r < options.rounds; r++) {
      for (let k = 0; k < targets.length; k++) {
        const i = (r + k) % targets.length;
        const samples = new Samples();
        perServer[i]!.push(figures(await run(pools[i]!, options.roundMs, samples), samples));
      }
    }
    return targets.map((t, i) => ({
      name: t.name,
      rounds: options.rounds,
      ...medianFigures(perServer[i]!),
    }));
  } finally {
    for (const raws of pools) for (const raw of raws) raw.close();
  }
}

async function connectMany(target: Target, count: number): Promise<ELockClient[]> {
  const clients: ELockClient[] = [];
  try {
    for (let i = 0; i < count; i += 64) {
      const batch = Math.min(64, count - i);
      clients.push(
        ...await Promise.all(
          Array.from(
            { length: batch },
            () => ELockClient.connect({ host: target.host, port: target.port }),
          ),
        ),
      );
    }
    return clients;
  } catch (error) {
    await Promise.all(clients.map((c) => c.close()));
    throw error;
  }
}

function figures(opsPerSec: number, samples: Samples): LoopFigures {
  const sorted = samples.sorted();
  return {
    opsPerSec,
    p50Ms: percentileOf(sorted, 50),
    p99Ms: percentileOf(sorted, 99),
  };
}

function medianFigures(rounds: readonly LoopFigures[]): LoopFigures {
  return {
    opsPerSec: round(median(rounds.map((r) => r.opsPerSec))),
    p50Ms: round(median(rounds.map((r) => r.p50Ms))),
    p99Ms: round(median(rounds.map((r) => r.p99Ms))),
  };
}
