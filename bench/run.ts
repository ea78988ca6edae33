/**
 * `deno task bench [--quick]`: starts the bundled server on Deno, Node and
 * Bun in child processes (loopback only), runs each measurement in a worker
 * process of the runtime it is about, prints every figure as tables and
 * writes the results (JSON) and a chart (SVG).
 *
 * Flags: `--quick` (every figure, short rounds: bench/results/quick.*),
 * `--server=bun|node|deno` (the server of sections 1-4, default bun),
 * `--load=bun|node|deno` (the client runtime of sections 2-3, the load
 * generator of 4 and the fallback load generator of 5, default bun),
 * `--ref=NAME=HOST:PORT,...` (running reference servers to add to section
 * 5; never built or started here), `--no-cc` (section 5 without the C
 * helpers, as on a machine without a compiler), `--out=DIR` (default
 * bench/results).
 *
 * Section 5 builds bench/loadgen.c and bench/echo.c with the machine's `cc`
 * (bench/native.ts); without one it uses the JavaScript load generator and
 * has no echo server, and says so in the results.
 *
 * Node runs JavaScript compiled by tsc from the same sources into
 * .build/bench (Node 20 cannot run TypeScript).
 *
 * @module
 */

import os from "node:os";
import { renderChart } from "./chart.ts";
import { type BenchConfig, CONFIGS } from "./config.ts";
import { type Job, RESULT_PREFIX } from "./jobs.ts";
import { buildNative, type EchoServer, type NativeTools, startEcho } from "./native.ts";
import {
  type BenchMode,
  type BenchResults,
  formatTables,
  problemsOf,
  type StateScaleResult,
} from "./results.ts";
import { measureServerSection, parseRefs, type SectionTarget } from "./server_section.ts";
import { round } from "./stats.ts";
import type {
  ContentionFigures,
  HotKeyFigures,
  OverheadFigures,
  ServerLoadFigures,
  StateScaleFigures,
  ThroughputFigures,
} from "./workloads.ts";

type Runtime = "deno" | "node" | "bun";
const RUNTIMES: readonly Runtime[] = ["deno", "node", "bun"];
const HOST = "127.0.0.1";

function flag(name: string): string | undefined {
  return Deno.args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

function runtimeFlag(name: string, fallback: Runtime): Runtime {
  const value = flag(name) ?? fallback;
  if (!RUNTIMES.includes(value as Runtime)) {
    throw new Error(`--${name}=${value}: expected one of ${RUNTIMES.join(", ")}`);
  }
  return value as Runtime;
}

/** A bundled server in a child process. */
interface ServerProcess {
  readonly runtime: Runtime;
  readonly port: number;
  readonly controlPort: number;
  readonly version: string;
  stop(): Promise<void>;
}

/** How to run `bench/<script>` on `runtime`. */
function commandOf(runtime: Runtime, script: "worker" | "server", args: string[]): string[] {
  switch (runtime) {
    case "deno":
      return [
        "node_modules/.bin/deno",
        "run",
        "-A",
        "--v8-flags=--expose-gc",
        `bench/${script}.ts`,
        ...args,
      ];
    case "bun":
      return ["node_modules/.bin/bun", `bench/${script}.ts`, ...args];
    case "node":
      return ["node", "--expose-gc", `.build/bench/bench/${script}.js`, ...args];
  }
}

/** The soft and hard limits of open files, as a POSIX shell reports them. */
async function fileLimits(): Promise<{ soft: number; hard: number }> {
  if (Deno.build.os === "windows") return { soft: Infinity, hard: Infinity };
  const { stdout } = await new Deno.Command("sh", { args: ["-c", "ulimit -Sn; ulimit -Hn"] })
    .output();
  const [soft, hard] = new TextDecoder().decode(stdout).trim().split(/\s+/).map((v) =>
    v === "unlimited" ? Infinity : Number(v)
  );
  return { soft: soft ?? 1024, hard: hard ?? soft ?? 1024 };
}

/** Spawns `argv`, through `sh` so that the open-file limit is raised to `fdLimit` first. */
function spawn(
  argv: string[],
  fdLimit: number,
  stdin: "piped" | "null",
): Deno.ChildProcess {
  const [cmd, ...args] = argv;
  const viaShell = Deno.build.os !== "windows";
  const limit = Number.isFinite(fdLimit) ? String(fdLimit) : "unlimited";
  return new Deno.Command(viaShell ? "sh" : cmd!, {
    args: viaShell
      ? ["-c", `ulimit -n ${limit} 2>/dev/null; exec "$@"`, "sh", cmd!, ...args]
      : args,
    stdin,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
}

async function startServerProcess(runtime: Runtime, fdLimit: number): Promise<ServerProcess> {
  const child = spawn(commandOf(runtime, "server", []), fdLimit, "piped");
  const stdin = child.stdin.getWriter();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`the ${runtime} server exited before it listened`);
    text += value;
  }
  const info = JSON.parse(text.slice(0, text.indexOf("\n"))) as {
    port: number;
    controlPort: number;
    version: string;
  };
  void (async () => {
    // Drain the rest of its output.
    while (!(await lines.read()).done);
  })();
  return {
    runtime,
    port: info.port,
    controlPort: info.controlPort,
    version: info.version,
    async stop() {
      await stdin.close().catch(() => {});
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      await child.status;
    },
  };
}

async function runWorker<T>(runtime: Runtime, jobs: Job[], fdLimit: number): Promise<T[]> {
  const child = spawn(commandOf(runtime, "worker", [JSON.stringify(jobs)]), fdLimit, "null");
  const [status, output] = await Promise.all([
    child.status,
    new Response(child.stdout).text(),
  ]);
  const line = output.split("\n").find((l) => l.startsWith(RESULT_PREFIX));
  if (!status.success || line === undefined) {
    throw new Error(`the ${runtime} worker failed (exit ${status.code}) on ${jobs[0]?.kind} jobs`);
  }
  const parsed = JSON.parse(line.slice(RESULT_PREFIX.length)) as { results: T[] };
  return parsed.results;
}

function log(text: string): void {
  console.error(`bench: ${text}`);
}

async function main(): Promise<void> {
  const mode: BenchMode = Deno.args.includes("--quick") ? "quick" : "full";
  const config: BenchConfig = CONFIGS[mode];
  const reference = runtimeFlag("server", "bun");
  const loadRuntime = runtimeFlag("load", "bun");
  const outDir = flag("out") ?? "bench/results";
  const refs = parseRefs(flag("ref"));
  const started = performance.now();
  const loadStart = Deno.loadavg()[0]!;
  const notes: string[] = [];
  if (refs.length > 0) {
    notes.push(
      `reference servers (started by the user, not by the bench): ${
        refs.map((r) => `${r.name} at ${r.host}:${r.port}`).join(", ")
      }`,
    );
  }

  const { soft, hard } = await fileLimits();
  let connections = config.state.connections;
  const fdLimit = Math.min(hard, Math.max(soft, connections + 1024));
  if (fdLimit < connections + 256) {
    connections = Math.max(100, Math.floor((fdLimit - 256) / 100) * 100);
    notes.push(
      `state scale ran ${connections} connections, not ${config.state.connections}: ` +
        `the open-file limit is ${hard} (raise it with ulimit -n)`,
    );
  }
  log(`mode ${mode}; open-file limit ${soft}/${hard}, children get ${fdLimit}`);

  log("compiling bench/ for Node with tsc");
  const tsc = await new Deno.Command("node_modules/.bin/tsc", {
    args: ["-p", "bench/tsconfig.json"],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!tsc.success) throw new Error("tsc -p bench/tsconfig.json failed");

  let tools: NativeTools | null = null;
  if (Deno.args.includes("--no-cc")) {
    notes.push("section 5 used the JavaScript load generator (--no-cc): no echo server");
  } else {
    const built = await buildNative();
    tools = built.tools;
    if (built.tools === null) {
      notes.push(
        `section 5 used the JavaScript load generator (${built.reason}): no echo server`,
      );
    }
  }
  log(
    tools === null
      ? "section 5: the JavaScript load generator"
      : `section 5: C load generator and echo server built with ${tools.compiler} -O2`,
  );

  const servers = new Map<Runtime, ServerProcess>();
  let echo: EchoServer | null = null;
  try {
    for (const runtime of RUNTIMES) {
      servers.set(runtime, await startServerProcess(runtime, fdLimit));
    }
    const ref = servers.get(reference)!;
    const target = { host: HOST, port: ref.port };
    const runtimes: Record<string, string> = {};
    for (const [runtime, server] of servers) runtimes[runtime] = server.version;

    log(`1. client overhead (server: ${reference})`);
    const overhead = [];
    for (const runtime of RUNTIMES) {
      const [figures] = await runWorker<OverheadFigures>(runtime, [{
        kind: "overhead",
        target,
        options: config.overhead,
      }], fdLimit);
      overhead.push({ runtime, ...figures! });
    }

    log(`2. throughput (clients on ${loadRuntime}, server: ${reference})`);
    const throughput = await runWorker<ThroughputFigures>(
      loadRuntime,
      [
        ...config.throughputClients.map((clients) => ({ clients })),
        ...config.sharedLoops.flatMap((clients) =>
          (["raw", "withLock"] as const).map((api) => ({ clients, shared: true, api }))
        ),
      ].map((shape) => ({
        kind: "throughput" as const,
        target,
        options: { ...shape, ...config.throughput },
      })),
      fdLimit,
    );

    log("3. contention");
    const [contention] = await runWorker<ContentionFigures>(loadRuntime, [{
      kind: "contention",
      target,
      options: config.contention,
    }], fdLimit);

    log(
      `5. server vs server (${refs.length} reference server${refs.length === 1 ? "" : "s"})`,
    );
    if (tools !== null) echo = await startEcho(tools);
    const sectionTargets: SectionTarget[] = [
      ...RUNTIMES.map((name) => ({
        host: HOST,
        port: servers.get(name)!.port,
        name,
        kind: "bundled" as const,
      })),
      ...(echo === null
        ? []
        : [{ host: HOST, port: echo.port, name: "echo", kind: "echo" as const }]),
      ...refs,
    ];
    const section = await measureServerSection(
      sectionTargets,
      {
        connections: config.serverConnections,
        hotWaiters: config.hotWaiters,
        ...config.servers,
      },
      tools,
      {
        pairs: async (targets, options) =>
          (await runWorker<ServerLoadFigures[]>(loadRuntime, [{
            kind: "servers",
            targets,
            options,
          }], fdLimit))[0]!,
        hot: async (targets, options) =>
          (await runWorker<HotKeyFigures[]>(loadRuntime, [{
            kind: "hotKey",
            targets,
            options,
          }], fdLimit))[0]!,
      },
    );
    await echo?.stop();
    echo = null;

    // A fresh server per measurement, so that its memory is its own.
    const stateServers: Runtime[] = mode === "full" ? [...RUNTIMES] : ["bun", "deno"];
    const stateScale: StateScaleResult[] = [];
    for (const runtime of stateServers) {
      log(
        `4. state scale: ${connections} connections × ${config.state.locksPerConnection} locks on ${runtime}`,
      );
      const fresh = await startServerProcess(runtime, fdLimit);
      try {
        const [figures] = await runWorker<StateScaleFigures>(loadRuntime, [{
          kind: "state",
          target: { host: HOST, port: fresh.port },
          controlPort: fresh.controlPort,
          options: { ...config.state, connections },
        }], fdLimit);
        stateScale.push({ server: runtime, ...figures! });
      } finally {
        await fresh.stop();
      }
    }

    const results: BenchResults = {
      schema: 2,
      mode,
      date: new Date().toISOString(),
      durationSec: round((performance.now() - started) / 1000, 3),
      machine: {
        os: `${Deno.build.os} ${Deno.osRelease()} ${Deno.build.arch}`,
        cpuModel: os.cpus()[0]?.model ?? "unknown",
        cpus: os.cpus().length,
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        loadStart,
        loadEnd: Deno.loadavg()[0]!,
      },
      runtimes,
      referenceServer: reference,
      loadRuntime,
      overhead,
      throughput,
      contention: contention!,
      stateScale,
      servers: section.comparisons,
      hotKey: section.hotKey,
      serverGenerator: section.generator,
      notes,
    };
    const problems = problemsOf(results);
    if (problems.length > 0) throw new Error(`malformed results:\n${problems.join("\n")}`);
    console.log(formatTables(results));
    const name = mode === "full" ? "latest" : mode;
    await Deno.mkdir(outDir, { recursive: true });
    await Deno.writeTextFile(`${outDir}/${name}.json`, `${JSON.stringify(results, null, 2)}\n`);
    await Deno.writeTextFile(`${outDir}/${name}.svg`, await renderChart(results));
    log(
      `wrote ${outDir}/${name}.json and ${outDir}/${name}.svg in ${
        results.durationSec.toFixed(0)
      } s`,
    );
  } finally {
    await echo?.stop();
    await Promise.all([...servers.values()].map((s) => s.stop()));
    tools?.dispose();
  }
}

await main();
