/**
 * Section 5, server vs server: the bundled server on each runtime, the C
 * echo server, and the reference servers the user points at
 * (`--ref=NAME=HOST:PORT,...`; the bench never builds or starts them),
 * measured by the same load generator in one run, in interleaved rounds:
 * lock/unlock pairs on distinct keys at each connection count, and grants
 * per second on one hot key with N waiters. The C load generator
 * (bench/loadgen.c) when it could be built, else the JavaScript one.
 *
 * @module
 */

import type { Target } from "./measure.ts";
import { type NativeTools, runLoadgen } from "./native.ts";
import { median, round } from "./stats.ts";
import type {
  HotKeyFigures,
  HotKeyOptions,
  ServerLoadFigures,
  ServerLoadOptions,
} from "./workloads.ts";

/** What a measured server is: the bundled one, a reference server, or the C echo server. */
export type ServerKind = "bundled" | "reference" | "echo";

/** A server of section 5. */
export interface SectionTarget extends Target {
  /** The runtime of a bundled server, the name given to a reference, or `echo`. */
  readonly name: string;
  readonly kind: ServerKind;
}

/** The settings of section 5. */
export interface ServerSectionOptions {
  /** Connection counts of the lock/unlock load. */
  readonly connections: readonly number[];
  /** Connections waiting on the hot key. */
  readonly hotWaiters: number;
  readonly rounds: number;
  readonly roundMs: number;
  /** The warm-up of each server before the first round. */
  readonly warmupMs: number;
}

/** The JavaScript load generator, run wherever the caller runs it (a worker, or in process). */
export interface JsLoad {
  pairs(
    targets: readonly (Target & { readonly name: string })[],
    options: ServerLoadOptions,
  ): Promise<ServerLoadFigures[]>;
  hot(
    targets: readonly (Target & { readonly name: string })[],
    options: HotKeyOptions,
  ): Promise<HotKeyFigures[]>;
}

/** One server's figures at one connection count. */
export interface ServerFigures extends ServerLoadFigures {
  readonly kind: ServerKind;
  /** ops/s of the fastest server ÷ this one's (1 = the fastest). */
  readonly slowdown: number;
}

/** One load against every server. */
export interface ServerComparison {
  readonly connections: number;
  readonly servers: readonly ServerFigures[];
}

/** One server on the hot key. */
export interface HotKeyResult extends HotKeyFigures {
  readonly kind: ServerKind;
}

/** Section 5 of a run. */
export interface ServerSection {
  /** Which load generator measured it. */
  readonly generator: "c" | "js";
  readonly comparisons: readonly ServerComparison[];
  readonly hotKey: { readonly waiters: number; readonly servers: readonly HotKeyResult[] };
}

/**
 * Parses `--ref=NAME=HOST:PORT,NAME=HOST:PORT`, HOST an IPv4 address (e.g.
 * `erlang=127.0.0.1:11602,node=127.0.0.1:11601`) into reference targets.
 *
 * @example
 * ```ts
 * parseRefs("node=127.0.0.1:11601"); // [{ name: "node", host: "127.0.0.1", port: 11601, kind: "reference" }]
 * ```
 */
export function parseRefs(text: string | undefined): SectionTarget[] {
  if (text === undefined || text.trim() === "") return [];
  return text.split(",").map((item) => {
    const match = /^([A-Za-z0-9_.-]+)=(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(item.trim());
    const port = Number(match?.[3]);
    if (match === null || !(port > 0 && port < 65536)) {
      throw new Error(`--ref: "${item}" is not NAME=HOST:PORT (HOST an IPv4 address)`);
    }
    return { name: match[1]!, host: match[2]!, port, kind: "reference" as const };
  });
}

/** How a server of section 5 is labelled in tables and the chart. */
export function serverLabel(server: { readonly name: string; readonly kind?: ServerKind }): string {
  switch (server.kind) {
    case "echo":
      return "C echo";
    case "reference":
      return `${server.name} reference`;
    default:
      return `bundled on ${server.name}`;
  }
}

function withSlowdown(
  connections: number,
  targets: readonly SectionTarget[],
  figures: readonly ServerLoadFigures[],
): ServerComparison {
  const best = Math.max(...figures.map((f) => f.opsPerSec));
  return {
    connections,
    servers: figures.map((f, i) => ({
      ...f,
      kind: targets[i]!.kind,
      slowdown: round(best / f.opsPerSec),
    })),
  };
}

/**
 * Measures section 5: for each connection count, rounds in which every
 * target is loaded in turn (the order rotating), then the hot key on every
 * target but the echo server (it holds no lock). With `tools`, each round
 * is one run of the C load generator; without, `js` runs the JavaScript one.
 */
export async function measureServerSection(
  targets: readonly SectionTarget[],
  options: ServerSectionOptions,
  tools: NativeTools | null,
  js: JsLoad,
): Promise<ServerSection> {
  const lockServers = targets.filter((t) => t.kind !== "echo");
  const pairTargets = tools === null ? lockServers : targets;
  const comparisons: ServerComparison[] = [];
  if (tools === null) {
    for (const connections of options.connections) {
      const figures = await js.pairs(pairTargets, {
        connections,
        rounds: options.rounds,
        roundMs: options.roundMs,
        warmupMs: options.warmupMs,
      });
      comparisons.push(withSlowdown(connections, pairTargets, figures));
    }
    const hot = await js.hot(lockServers, {
      waiters: options.hotWaiters,
      rounds: options.rounds,
      roundMs: options.roundMs,
      warmupMs: options.warmupMs,
    });
    return {
      generator: "js",
      comparisons,
      hotKey: {
        waiters: options.hotWaiters,
        servers: hot.map((h, i) => ({ ...h, kind: lockServers[i]!.kind })),
      },
    };
  }

  // One run of the C load generator per load: its connections stay open across the rounds.
  const interleave = async (
    list: readonly SectionTarget[],
    mode: "pairs" | "hot",
    connections: number,
  ) => {
    const runs = await runLoadgen(tools, list, {
      mode,
      connections,
      warmupMs: options.warmupMs,
      roundMs: options.roundMs,
      rounds: options.rounds,
    });
    return list.map((_, i) => runs.filter((r) => r.target === i));
  };
  const med = (values: number[]) => round(median(values));
  for (const connections of options.connections) {
    const perServer = await interleave(pairTargets, "pairs", connections);
    comparisons.push(withSlowdown(
      connections,
      pairTargets,
      perServer.map((runs, i) => ({
        name: pairTargets[i]!.name,
        rounds: runs.length,
        opsPerSec: med(runs.map((f) => f.opsPerSec)),
        p50Ms: med(runs.map((f) => f.p50Ms)),
        p99Ms: med(runs.map((f) => f.p99Ms)),
      })),
    ));
  }
  const hot = await interleave(lockServers, "hot", options.hotWaiters);
  return {
    generator: "c",
    comparisons,
    hotKey: {
      waiters: options.hotWaiters,
      servers: hot.map((runs, i) => ({
        name: lockServers[i]!.name,
        kind: lockServers[i]!.kind,
        rounds: runs.length,
        waiters: options.hotWaiters,
        grantsPerSec: med(runs.map((f) => f.grantsPerSec ?? NaN)),
        handoffP50Ms: med(runs.map((f) => f.handoffP50Ms ?? NaN)),
        handoffP99Ms: med(runs.map((f) => f.handoffP99Ms ?? NaN)),
      })),
    },
  };
}

/** A bundled server's figure against the faster reference and the echo server. */
export interface ServerRatio {
  /** `pairs` at `connections`, or the hot key. */
  readonly load: "pairs" | "hot";
  readonly connections: number;
  readonly server: string;
  /** This ÷ the faster reference's (goal ≥ 1.5), when references were measured. */
  readonly vsReference?: number;
  readonly reference?: string;
  /** This ÷ the echo server's (goal ≥ 0.7), for pairs when it was measured. */
  readonly vsEcho?: number;
}

/**
 * The ratios of the goals: each bundled server's ops/s (grants/s on
 * the hot key) ÷ the faster reference's, and ÷ the echo server's.
 *
 * @example
 * ```ts
 * for (const r of serverRatios(section)) console.log(r.server, r.vsReference, r.vsEcho);
 * ```
 */
export function serverRatios(
  section: Pick<ServerSection, "comparisons" | "hotKey">,
): ServerRatio[] {
  const ratios: ServerRatio[] = [];
  const compare = (
    load: "pairs" | "hot",
    connections: number,
    list: readonly { name: string; kind: ServerKind; value: number }[],
  ) => {
    const refs = list.filter((s) => s.kind === "reference");
    const best = refs.reduce<(typeof refs)[number] | undefined>(
      (a, b) => (a === undefined || b.value > a.value ? b : a),
      undefined,
    );
    const echo = list.find((s) => s.kind === "echo");
    for (const s of list.filter((s) => s.kind === "bundled")) {
      ratios.push({
        load,
        connections,
        server: s.name,
        ...(best === undefined
          ? {}
          : { vsReference: round(s.value / best.value, 3), reference: best.name }),
        ...(echo === undefined ? {} : { vsEcho: round(s.value / echo.value, 3) }),
      });
    }
  };
  for (const c of section.comparisons) {
    compare("pairs", c.connections, c.servers.map((s) => ({ ...s, value: s.opsPerSec })));
  }
  compare(
    "hot",
    section.hotKey.waiters,
    section.hotKey.servers.map((s) => ({ ...s, value: s.grantsPerSec })),
  );
  return ratios;
}
