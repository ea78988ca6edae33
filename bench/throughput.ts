/**
 * Throughput: many clients at once, each on a key of its own.
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
