/**
 * How long and how big each measurement is, per mode: `full` (the
 * committed results), `quick` (`--quick`: every figure, in well under two
 * minutes) and `smoke` (the test suite's one-second run, in one process).
 *
 * @module
 */

import type { BenchMode } from "./results.ts";
import type {
  ContentionOptions,
  OverheadOptions,
  ServerLoadOptions,
  StateScaleOptions,
  ThroughputOptions,
} from "./workloads.ts";

/** The settings of one mode. */
export interface BenchConfig {
  readonly overhead: OverheadOptions;
  readonly throughputClients: readonly number[];
  /** Loops sharing one client (raw, then withLock). */
  readonly sharedLoops: readonly number[];
  readonly throughput: Omit<ThroughputOptions, "clients">;
  readonly contention: ContentionOptions;
  readonly state: StateScaleOptions;
  /** Section 5: connection counts of the lock/unlock load, and waiters on the hot key. */
  readonly serverConnections: readonly number[];
  readonly hotWaiters: number;
  readonly servers: Omit<ServerLoadOptions, "connections">;
}

/** The settings of each mode. */
export const CONFIGS: Readonly<Record<BenchMode, BenchConfig>> = {
  full: {
    overhead: { rounds: 200, roundMs: 40, warmupMs: 1000 },
    throughputClients: [1, 8, 64, 256],
    sharedLoops: [64],
    throughput: { rounds: 5, roundMs: 1000, warmupMs: 500 },
    contention: { clients: 16, rounds: 5, roundMs: 1000 },
    state: { connections: 10_000, locksPerConnection: 10, batch: 250, settleMs: 1000 },
    serverConnections: [1, 64],
    hotWaiters: 16,
    servers: { rounds: 8, roundMs: 500, warmupMs: 300 },
  },
  quick: {
    overhead: { rounds: 40, roundMs: 40, warmupMs: 200 },
    throughputClients: [1, 8, 64, 256],
    sharedLoops: [64],
    throughput: { rounds: 3, roundMs: 300, warmupMs: 150 },
    contention: { clients: 16, rounds: 3, roundMs: 400 },
    state: { connections: 10_000, locksPerConnection: 10, batch: 250, settleMs: 500 },
    serverConnections: [1, 64],
    hotWaiters: 16,
    servers: { rounds: 4, roundMs: 250, warmupMs: 150 },
  },
  smoke: {
    overhead: { rounds: 2, roundMs: 60, warmupMs: 40 },
    throughputClients: [1, 8],
    sharedLoops: [8],
    throughput: { rounds: 1, roundMs: 80, warmupMs: 20 },
    contention: { clients: 4, rounds: 1, roundMs: 100 },
    state: { connections: 20, locksPerConnection: 10, batch: 20 },
    serverConnections: [1, 4],
    hotWaiters: 4,
    servers: { rounds: 1, roundMs: 60, warmupMs: 20 },
  },
};
