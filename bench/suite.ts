/**
 * The whole bench in one process, on the runtime it runs on, with the
 * bundled server started in the same process: what the smoke test
 * (tests/bench_smoke_test.ts) runs, with the `smoke` settings, to keep every
 * workload, the results check, the tables and the chart from rotting.
 * Figures from here mean little: client and server share one process.
 * Section 5 uses the C load generator and echo server when `cc` can build
 * them (bench/native.ts), else the JavaScript load generator.
 *
 * @module
 */

import os from "node:os";
import { startServer } from "../src/server/mod.ts";
import { CONFIGS } from "./config.ts";
import { buildNative, type EchoServer, startEcho } from "./native.ts";
import type { BenchMode, BenchResults } from "./results.ts";
import { type JsLoad, measureServerSection, type SectionTarget } from "./server_section.ts";
import { memorySample, runtimeName, runtimeVersion } from "./runtime.ts";
import { round } from "./stats.ts";
import {
  measureContention,
  measureHotKey,
  measureOverhead,
  measureServers,
  measureStateScale,
  measureThroughput,
} from "./workloads.ts";

/** The JavaScript load generator of section 5, in this process. */
export const inProcessJsLoad: JsLoad = { pairs: measureServers, hot: measureHotKey };

/**
 * Runs every measurement in this process with the settings of `mode`;
 * `native: false` keeps section 5 on the JavaScript load generator even
 * when a C compiler is there.
 */
export async function runInProcess(
  mode: BenchMode = "smoke",
  options: { readonly native?: boolean } = {},
): Promise<BenchResults> {
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
  const notes = ["one process: client and server share it"];
  const built = options.native === false
    ? { tools: null, reason: "native: false" }
    : await buildNative();
  if (built.tools === null) {
    notes.push(`section 5 used the JavaScript load generator (${built.reason}): no echo server`);
  }
  let echo: EchoServer | null = null;
  let section;
  try {
    if (built.tools !== null) echo = await startEcho(built.tools);
    const targets: SectionTarget[] = [
      { ...target, name: runtime, kind: "bundled" },
      ...(echo === null
        ? []
        : [{ ...target, port: echo.port, name: "echo", kind: "echo" as const }]),
    ];
    section = await measureServerSection(
      targets,
      {
        connections: config.serverConnections,
        hotWaiters: config.hotWaiters,
        ...config.servers,
      },
      built.tools,
      inProcessJsLoad,
    );
  } finally {
    await echo?.stop();
    built.tools?.dispose();
  }
  const state = await measureStateScale(
    target,
    () => Promise.resolve(memorySample()),
    config.state,
  );
  const load = os.loadavg()[0] ?? 0;
  return {
    schema: 2,
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
    servers: section.comparisons,
    hotKey: section.hotKey,
    serverGenerator: section.generator,
    notes,
  };
}
