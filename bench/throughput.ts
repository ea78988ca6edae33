/**
 * Throughput: many clients at once, each on a key of its own; or one client
 * shared by many concurrent loops (`shared`), with the raw API or
 * `withLock()` (which queues in the client and takes a session of its pool).
 *
 * @module
 */

import {
  connectMany,
  figures,
  type LoopFigures,
  medianFigures,
  now,
  type Target,
} from "./measure.ts";
import { Samples } from "./stats.ts";

/** Many clients at once, each on its own key. */
export interface ThroughputOptions {
  /** How many loops (one client each, unless `shared`). */
  readonly clients: number;
  /** One client for every loop. */
  readonly shared?: boolean;
  /** `lock()`/`unlock()` (default) or `withLock()`. */
  readonly api?: "raw" | "withLock";
  readonly rounds: number;
  readonly roundMs: number;
  readonly warmupMs: number;
}

/** What {@linkcode measureThroughput} found (medians over rounds). */
export interface ThroughputFigures extends LoopFigures {
  readonly clients: number;
  readonly shared?: boolean;
  readonly api?: "raw" | "withLock";
  readonly rounds: number;
}

/** `clients` clients, each looping lock/unlock on a key of its own, all at once. */
export async function measureThroughput(
  target: Target,
  options: ThroughputOptions,
): Promise<ThroughputFigures> {
  const clients = await connectMany(target, options.shared ? 1 : options.clients);
  const loops = Array.from({ length: options.clients }, (_, i) => clients[i % clients.length]!);
  const withLock = options.api === "withLock";
  const tag = Math.random().toString(36).slice(2, 10);
  try {
    const run = async (ms: number, samples: Samples | null) => {
      const start = now();
      const counts = await Promise.all(loops.map(async (client, i) => {
        const key = `tp-${tag}-${i}`;
        let ops = 0;
        let end = start;
        do {
          const t0 = now();
          let t1 = t0;
          if (withLock) {
            await client.withLock(key, () => void (t1 = now()));
          } else {
            if (!await client.lock(key)) throw new Error(`throughput: ${key} not granted`);
            t1 = now();
            await client.unlock(key);
          }
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
    return {
      clients: options.clients,
      ...(options.shared ? { shared: true } : {}),
      ...(options.api === undefined ? {} : { api: options.api }),
      rounds: rounds.length,
      ...medianFigures(rounds),
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}
