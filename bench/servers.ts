/**
 * Server vs server: the same raw load against several servers in turn.
 *
 * @module
 */

import { encoder, figures, type LoopFigures, medianFigures, now, type Target } from "./measure.ts";
import { connectRaw, type RawConnection } from "./raw_socket.ts";
import { Samples } from "./stats.ts";

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
