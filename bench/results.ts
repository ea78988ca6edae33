/**
 * The shape of bench/results/latest.json, a check that a run produced it
 * whole, and the table printed at the end of a run.
 *
 * @module
 */

import {
  type HotKeyResult,
  type ServerComparison,
  serverLabel,
  serverRatios,
} from "./server_section.ts";
import type {
  ContentionFigures,
  LoopFigures,
  OverheadFigures,
  StateScaleFigures,
  ThroughputFigures,
} from "./workloads.ts";

export type { HotKeyResult, ServerComparison } from "./server_section.ts";

/** Which settings a run used. */
export type BenchMode = "full" | "quick" | "smoke";

/** Client overhead of one runtime. */
export interface OverheadResult extends OverheadFigures {
  readonly runtime: string;
}

/** State scale on one server. */
export interface StateScaleResult extends StateScaleFigures {
  readonly server: string;
}

/** Everything one run measured: bench/results/latest.json. */
export interface BenchResults {
  /** 2: section 5 with server kinds, the hot key and its load generator; state scale's RSS after release. */
  readonly schema: 2;
  readonly mode: BenchMode;
  readonly date: string;
  readonly durationSec: number;
  readonly machine: {
    readonly os: string;
    readonly cpuModel: string;
    readonly cpus: number;
    readonly memoryGiB: number;
    /** 1-minute load averages at the start and at the end (others share the machine). */
    readonly loadStart: number;
    readonly loadEnd: number;
  };
  /** Runtime versions, by name. */
  readonly runtimes: Readonly<Record<string, string>>;
  /** The server runtime of sections 1 to 4. */
  readonly referenceServer: string;
  /** The client runtime of sections 2, 3 and the load generator of 4 and 5. */
  readonly loadRuntime: string;
  readonly overhead: readonly OverheadResult[];
  readonly throughput: readonly ThroughputFigures[];
  readonly contention: ContentionFigures;
  readonly stateScale: readonly StateScaleResult[];
  /** Section 5: lock/unlock pairs at each connection count. */
  readonly servers: readonly ServerComparison[];
  /** Section 5: one hot key with waiters. */
  readonly hotKey: { readonly waiters: number; readonly servers: readonly HotKeyResult[] };
  /** The load generator of section 5: bench/loadgen.c, or the JavaScript one without a compiler. */
  readonly serverGenerator: "c" | "js";
  readonly notes: readonly string[];
}

/**
 * What is wrong with `results`: missing fields, numbers that are not
 * finite, or not positive where they must be. Empty when well-formed.
 * Deltas of memory may be ≤ 0 in a tiny run; they need only be finite.
 */
export function problemsOf(results: BenchResults): string[] {
  const problems: string[] = [];
  const positive = (where: string, value: unknown) => {
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
      problems.push(`${where} is not a positive number: ${String(value)}`);
    }
  };
  const finite = (where: string, value: unknown) => {
    if (typeof value !== "number" || !Number.isFinite(value)) {
      problems.push(`${where} is not a finite number: ${String(value)}`);
    }
  };
  const loop = (where: string, figures: LoopFigures | undefined) => {
    positive(`${where}.opsPerSec`, figures?.opsPerSec);
    positive(`${where}.p50Ms`, figures?.p50Ms);
    positive(`${where}.p99Ms`, figures?.p99Ms);
  };
  if (results.schema !== 2) problems.push(`schema is ${String(results.schema)}`);
  for (const key of ["mode", "date", "referenceServer", "loadRuntime"] as const) {
    if (typeof results[key] !== "string" || results[key] === "") problems.push(`${key} is missing`);
  }
  positive("durationSec", results.durationSec);
  positive("machine.cpus", results.machine?.cpus);
  positive("machine.memoryGiB", results.machine?.memoryGiB);
  if (Object.keys(results.runtimes ?? {}).length === 0) problems.push("runtimes is empty");
  if (!(results.overhead?.length > 0)) problems.push("overhead is empty");
  for (const [i, o] of (results.overhead ?? []).entries()) {
    if (typeof o.runtime !== "string") problems.push(`overhead[${i}].runtime is missing`);
    loop(`overhead[${i}].client`, o.client);
    loop(`overhead[${i}].transport`, o.transport);
    loop(`overhead[${i}].raw`, o.raw);
    positive(`overhead[${i}].transportRatio`, o.transportRatio);
    positive(`overhead[${i}].ratio`, o.ratio);
    positive(`overhead[${i}].ratioP25`, o.ratioP25);
    positive(`overhead[${i}].ratioP75`, o.ratioP75);
    positive(`overhead[${i}].rounds`, o.rounds);
    if (o.ratios?.length !== o.rounds) problems.push(`overhead[${i}].ratios: not one per round`);
    for (const [j, r] of (o.ratios ?? []).entries()) positive(`overhead[${i}].ratios[${j}]`, r);
  }
  if (!(results.throughput?.length > 0)) problems.push("throughput is empty");
  for (const [i, t] of (results.throughput ?? []).entries()) {
    positive(`throughput[${i}].clients`, t.clients);
    loop(`throughput[${i}]`, t);
  }
  const c = results.contention;
  positive("contention.clients", c?.clients);
  positive("contention.grantsPerSec", c?.grantsPerSec);
  positive("contention.handoffP50Ms", c?.handoffP50Ms);
  positive("contention.handoffP99Ms", c?.handoffP99Ms);
  if (!(results.stateScale?.length > 0)) problems.push("stateScale is empty");
  for (const [i, s] of (results.stateScale ?? []).entries()) {
    const at = `stateScale[${i}]`;
    for (
      const key of [
        "connections",
        "locksPerConnection",
        "rssBaseline",
        "rssConnected",
        "rssLocked",
        "rssReleased",
        "connectMs",
        "lockMs",
        "releaseMs",
      ] as const
    ) positive(`${at}.${key}`, s[key]);
    for (
      const key of ["rssPerConnection", "rssPerLock", "heapPerConnection", "heapPerLock"] as const
    ) finite(`${at}.${key}`, s[key]);
  }
  if (!(results.servers?.length > 0)) problems.push("servers is empty");
  for (const [i, comparison] of (results.servers ?? []).entries()) {
    positive(`servers[${i}].connections`, comparison.connections);
    if (!(comparison.servers?.length > 0)) problems.push(`servers[${i}].servers is empty`);
    for (const [j, s] of (comparison.servers ?? []).entries()) {
      loop(`servers[${i}].servers[${j}]`, s);
      positive(`servers[${i}].servers[${j}].slowdown`, s.slowdown);
      if (!["bundled", "reference", "echo"].includes(s.kind)) {
        problems.push(`servers[${i}].servers[${j}].kind is ${String(s.kind)}`);
      }
    }
  }
  if (results.serverGenerator !== "c" && results.serverGenerator !== "js") {
    problems.push(`serverGenerator is ${String(results.serverGenerator)}`);
  }
  positive("hotKey.waiters", results.hotKey?.waiters);
  if (!(results.hotKey?.servers?.length > 0)) problems.push("hotKey.servers is empty");
  for (const [i, h] of (results.hotKey?.servers ?? []).entries()) {
    positive(`hotKey.servers[${i}].grantsPerSec`, h.grantsPerSec);
    positive(`hotKey.servers[${i}].handoffP50Ms`, h.handoffP50Ms);
    positive(`hotKey.servers[${i}].handoffP99Ms`, h.handoffP99Ms);
  }
  return problems;
}

/** The results as text tables, every figure of the run. */
export function formatTables(results: BenchResults): string {
  const out: string[] = [];
  const { machine } = results;
  out.push(
    `eLock bench (${results.mode}), ${results.date}, ${results.durationSec.toFixed(0)} s`,
    `machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, ${machine.os}; ` +
      `load ${machine.loadStart.toFixed(2)} → ${machine.loadEnd.toFixed(2)}`,
    `runtimes: ${Object.entries(results.runtimes).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `server of 1-4: bundled server on ${results.referenceServer}; ` +
      `clients of 2-3 and load generator of 4-5: ${results.loadRuntime}`,
    "",
    "1. Client overhead: sequential lock/unlock on one connection: client, the default " +
      "transport's web streams alone (streams) and a raw socket",
    `   (${results.overhead[0]?.rounds ?? 0} rounds, the three in turn; medians over rounds; ` +
      "ratios: median of the rounds' raw ops/s ÷ ops/s, client/raw with its 25th-75th percentiles)",
    table(
      [
        "runtime",
        "client ops/s",
        "p50 ms",
        "p99 ms",
        "streams ops/s",
        "raw ops/s",
        "p50 ms",
        "p99 ms",
        "client/raw",
        "p25-p75",
        "streams/raw",
      ],
      results.overhead.map((o) => [
        o.runtime,
        int(o.client.opsPerSec),
        ms(o.client.p50Ms),
        ms(o.client.p99Ms),
        int(o.transport.opsPerSec),
        int(o.raw.opsPerSec),
        ms(o.raw.p50Ms),
        ms(o.raw.p99Ms),
        `${o.ratio.toFixed(3)}${o.ratio <= 1.15 ? "" : " (> 1.15)"}`,
        `${o.ratioP25.toFixed(2)}-${o.ratioP75.toFixed(2)}`,
        o.transportRatio.toFixed(3),
      ]),
    ),
    "",
    `2. Throughput: loops on distinct keys, each looping lock/unlock (a client each, or one shared)`,
    table(
      ["loops", "clients", "api", "total ops/s", "p50 ms", "p99 ms"],
      results.throughput.map((t) => [
        String(t.clients),
        t.shared ? "1 shared" : String(t.clients),
        t.api === "withLock" ? "withLock" : "lock/unlock",
        int(t.opsPerSec),
        ms(t.p50Ms),
        ms(t.p99Ms),
      ]),
    ),
    "",
    `3. Contention: ${results.contention.clients} clients on one hot key, waiting`,
    table(
      ["grants/s", "hand-off p50 ms", "hand-off p99 ms"],
      [[
        int(results.contention.grantsPerSec),
        ms(results.contention.handoffP50Ms),
        ms(results.contention.handoffP99Ms),
      ]],
    ),
    "",
    "4. State scale: connections × locks, server process memory (RSS: at the start, with " +
      "every lock held, after all disconnect); release when all disconnect",
    table(
      [
        "server",
        "conns × locks",
        "RSS/conn",
        "RSS/lock",
        "heap/conn",
        "heap/lock",
        "RSS start",
        "RSS total",
        "RSS after",
        "connect s",
        "lock s",
        "release ms",
      ],
      results.stateScale.map((s) => [
        s.server,
        `${s.connections} × ${s.locksPerConnection}`,
        bytes(s.rssPerConnection),
        bytes(s.rssPerLock),
        bytes(s.heapPerConnection),
        bytes(s.heapPerLock),
        mib(s.rssBaseline),
        mib(s.rssLocked),
        mib(s.rssReleased),
        (s.connectMs / 1000).toFixed(2),
        (s.lockMs / 1000).toFixed(2),
        s.releaseMs.toFixed(0),
      ]),
    ),
    "",
    "5. Server vs server: the same load against each, interleaved rounds, load generator: " +
      (results.serverGenerator === "c"
        ? "C (bench/loadgen.c, one thread, one command outstanding per connection)"
        : "JavaScript (raw sockets; no C compiler)"),
    "   lock/unlock pairs, each connection on a key of its own:",
    table(
      ["connections", "server", "ops/s", "p50 ms", "p99 ms", "fastest/this"],
      results.servers.flatMap((c) =>
        c.servers.map((s) => [
          String(c.connections),
          serverLabel(s),
          int(s.opsPerSec),
          ms(s.p50Ms),
          ms(s.p99Ms),
          s.slowdown.toFixed(2),
        ])
      ),
    ),
    `   one hot key, ${results.hotKey.waiters} connections waiting for it ` +
      "(hand-off: unlock sent → next grant received):",
    table(
      ["server", "grants/s", "hand-off p50 ms", "hand-off p99 ms"],
      results.hotKey.servers.map((s) => [
        serverLabel(s),
        int(s.grantsPerSec),
        ms(s.handoffP50Ms),
        ms(s.handoffP99Ms),
      ]),
    ),
    "   ratios (goals: ≥ 1.5 × the faster reference, ≥ 0.7 × the C echo server):",
    ...ratioLines(results),
  );
  if (results.notes.length > 0) out.push("", ...results.notes.map((n) => `note: ${n}`));
  return `${out.join("\n")}\n`;
}

function ratioLines(results: BenchResults): string[] {
  const ratios = serverRatios({ comparisons: results.servers, hotKey: results.hotKey });
  const lines = ratios.map((r) => {
    const what = r.load === "hot"
      ? `hot key, ${r.connections} waiters`
      : `${r.connections} connection${r.connections === 1 ? "" : "s"}`;
    const parts = [
      r.vsReference === undefined
        ? "no reference measured"
        : `${r.vsReference.toFixed(2)} × the faster reference (${r.reference})`,
      ...(r.vsEcho === undefined ? [] : [`${r.vsEcho.toFixed(2)} × echo`]),
    ];
    return `   - bundled on ${r.server}, ${what}: ${parts.join(", ")}`;
  });
  if (!results.servers.some((c) => c.servers.some((s) => s.kind === "reference"))) {
    lines.push("   (no reference server: point at running ones with --ref=NAME=HOST:PORT,...)");
  }
  return lines;
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function int(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function ms(n: number): string {
  return n < 1 ? n.toFixed(3) : n < 10 ? n.toFixed(2) : n.toFixed(1);
}

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(0)} MiB`;
}

function bytes(n: number): string {
  return Math.abs(n) < 10_000 ? `${Math.round(n)} B` : `${(n / 1024).toFixed(1)} KiB`;
}
