/**
 * The whole bench in one process, on the runtime it runs on, with the
 * bundled server started in the same process: what the smoke test
 * (tests/bench_smoke_test.ts) runs, with the `smoke` settings, to keep every
 * workload, the results check, the tables and the chart from rotting.
 * Figures from here mean little: client and server share one process.
 *
 * @module
 */

import os from "node:os";
import { startServer } from "../src/server/mod.ts";
import { CONFIGS } from "./config.ts";
import type { BenchMode, BenchResults } from "./results.ts";
import { memorySample, runtimeName, runtimeVersion } from "./runtime.ts";
import { round } from "./stats.ts";
import {
  measureContention,
  measureOverhead,
  measureServers,
  measureStateScale,
  measureThroughput,
} from "./workloads.ts";

/** Runs every measurement in this process with the settings of `mode`. */
export async function runInProcess(mode: BenchMode = "smoke"): Promise<BenchResults> {
  const config = CONFIGS[mode];
  const started = performance.now();
  const runtime = runtimeName();
  await using server = await startServer({ hostname: "127.0.0.1", port: 0 });
  const target = { host: "127.0.0.1", port: server.port };
  const overhead = [{ runtime, ...await measureOverhead(target, config.overhead) }];
  const throughput = [];
  for (const clients of config.throughputClients) {
    throughput.push(await measureThroughput(target, { clients, ...config.throughput }));
  }
  for (const clients of config.sharedLoops) {
    for (const api of ["raw", "withLock"] as const) {
      throughput.push(
        await measureThroughput(target, { clients, shared: true, api, ...config.throughput }),
      );
    }
  }
  const contention = await measureContention(target, config.contention);
  const servers = [];
  for (const connections of config.serverConnections) {
    const [figures] = await measureServers([{ ...target, name: runtime }], {
      connections,
      ...config.servers,
    });
    servers.push({ connections, servers: [{ ...figures!, slowdown: 1 }] });
  }
  const state = await measureStateScale(
    target,
    () => Promise.resolve(memorySample()),
    config.state,
  );
  const load = os.loadavg()[0] ?? 0;
  return {
    schema: 1,
    mode,
    date: new Date().toISOString(),
    durationSec: round((performance.now() - started) / 1000, 3),
    machine: {
      os: `${os.platform()} ${os.release()} ${os.arch()}`,
      cpuModel: os.cpus()[0]?.model ?? "unknown",
      cpus: os.cpus().length,
      memoryGiB: Math.max(1, Math.round(os.totalmem() / 2 ** 30)),
      loadStart: load,
      loadEnd: os.loadavg()[0] ?? 0,
    },
    runtimes: { [runtime]: runtimeVersion() },
    referenceServer: runtime,
    loadRuntime: runtime,
    overhead,
    throughput,
    contention,
    stateScale: [{ server: runtime, ...state }],
    servers,
    notes: ["one process: client and server share it"],
  };
}
