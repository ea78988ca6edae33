/**
 * Server vs server with the JavaScript load generator: the same raw load
 * against several servers in turn (bench/server_section.ts uses the C one
 * of bench/loadgen.c instead when it could be built).
 *
 * @module
 */

import { encoder, figures, type LoopFigures, medianFigures, now, type Target } from "./measure.ts";
import { connectRaw, type RawConnection } from "./raw_socket.ts";
import { median, round, Samples } from "./stats.ts";

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

/** One hot key, waited for by every connection, against several servers in turn. */
export interface HotKeyOptions {
  /** Connections waiting for the key. */
  readonly waiters: number;
  readonly rounds: number;
  readonly roundMs: number;
  readonly warmupMs: number;
}

/** What {@linkcode measureHotKey} found for one server (medians over rounds). */
export interface HotKeyFigures {
  readonly name: string;
  readonly rounds: number;
  readonly waiters: number;
  /** Locks granted per second. */
  readonly grantsPerSec: number;
  /** From an unlock being sent to the next grant arriving, ms. */
  readonly handoffP50Ms: number;
  readonly handoffP99Ms: number;
}

/**
 * Raw connections on one key (release timeout 0), each looping `lock KEY 30`
 * (waiting) and `unlock KEY`, against each server in turn, the order
 * rotating every round.
 */
export async function measureHotKey(
  targets: readonly (Target & { readonly name: string })[],
  options: HotKeyOptions,
): Promise<HotKeyFigures[]> {
  const setTimeout0 = encoder.encode("set_timeout 0\n");
  const pools = await Promise.all(targets.map(async (target) => {
    const raws: RawConnection[] = [];
    for (let i = 0; i < options.waiters; i++) {
      const raw = await connectRaw(target.host, target.port);
      raws.push(raw);
      await raw.roundTrip(setTimeout0, 1);
    }
    return raws;
  }));
  try {
    const run = async (raws: RawConnection[], ms: number) => {
      const key = `hk${Math.random().toString(36).slice(2, 10)}`;
      const lock = encoder.encode(`lock ${key} 30\n`);
      const unlock = encoder.encode(`unlock ${key}\n`);
      const handoffs = new Samples();
      let grants = 0;
      let unlockSentAt = -1;
      let stopping = false;
      const start = now();
      let end = start;
      // Every loop ends after an unlock, so that no lock is left held.
      await Promise.all(raws.map(async (raw) => {
        while (!stopping) {
          await raw.roundTrip(lock, 1);
          const t = now();
          if (!stopping) {
            grants++;
            if (unlockSentAt >= 0) handoffs.add(t - unlockSentAt);
            if (t - start >= ms) {
              stopping = true;
              end = t;
            }
          }
          unlockSentAt = now();
          await raw.roundTrip(unlock, 1);
        }
      }));
      return {
        grantsPerSec: grants / ((end - start) / 1000),
        p50: handoffs.percentile(50),
        p99: handoffs.percentile(99),
      };
    };
    for (const raws of pools) await run(raws, options.warmupMs);
    const perServer: { grantsPerSec: number; p50: number; p99: number }[][] = targets.map(() => []);
    for (let r = 0; r < options.rounds; r++) {
      for (let k = 0; k < targets.length; k++) {
        const i = (r + k) % targets.length;
        perServer[i]!.push(await run(pools[i]!, options.roundMs));
      }
    }
    return targets.map((t, i) => ({
      name: t.name,
      rounds: options.rounds,
      waiters: options.waiters,
      grantsPerSec: round(median(perServer[i]!.map((f) => f.grantsPerSec))),
      handoffP50Ms: round(median(perServer[i]!.map((f) => f.p50))),
      handoffP99Ms: round(median(perServer[i]!.map((f) => f.p99))),
    }));
  } finally {
    for (const raws of pools) for (const raw of raws) raw.close();
  }
}
