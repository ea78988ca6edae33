/**
 * Contention: clients taking turns on one hot key, waiting for it.
 *
 * @module
 */

import { connectMany, now, type Target } from "./measure.ts";
import { median, round, Samples } from "./stats.ts";

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
