/**
 * What the measurements share: the server to measure, loop figures, and
 * connecting many clients at once.
 *
 * @module
 */

import { ELockClient } from "../mod.ts";
import { median, percentileOf, round, type Samples } from "./stats.ts";

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

/** The clock of every measurement, in ms. */
export const now = (): number => performance.now();

/** Encodes command lines. */
export const encoder: TextEncoder = new TextEncoder();

/** Connects `count` clients, 64 at a time. */
export async function connectMany(target: Target, count: number): Promise<ELockClient[]> {
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

/** Ops/s and the latency percentiles of one loop. */
export function figures(opsPerSec: number, samples: Samples): LoopFigures {
  const sorted = samples.sorted();
  return {
    opsPerSec,
    p50Ms: percentileOf(sorted, 50),
    p99Ms: percentileOf(sorted, 99),
  };
}

/** The median of each figure over rounds. */
export function medianFigures(rounds: readonly LoopFigures[]): LoopFigures {
  return {
    opsPerSec: round(median(rounds.map((r) => r.opsPerSec))),
    p50Ms: round(median(rounds.map((r) => r.p50Ms))),
    p99Ms: round(median(rounds.map((r) => r.p99Ms))),
  };
}
