/**
 * Every measurement of the bench, runtime-neutral: each runs in the process
 * it is called in (a per-runtime worker of bench/run.ts, or the smoke test)
 * against a server given by port. One file per measurement; this one lists them.
 *
 * @module
 */

export type { LoopFigures, MemoryProbe, MemorySample, Target } from "./measure.ts";
export { measureOverhead } from "./overhead.ts";
export type { OverheadFigures, OverheadOptions } from "./overhead.ts";
export { measureThroughput } from "./throughput.ts";
export type { ThroughputFigures, ThroughputOptions } from "./throughput.ts";
export { measureContention } from "./contention.ts";
export type { ContentionFigures, ContentionOptions } from "./contention.ts";
export { measureStateScale } from "./state_scale.ts";
export type { StateScaleFigures, StateScaleOptions } from "./state_scale.ts";
export { measureServers } from "./servers.ts";
export type { ServerLoadFigures, ServerLoadOptions } from "./servers.ts";
export { measureHotKey } from "./servers.ts";
export type { HotKeyFigures, HotKeyOptions } from "./servers.ts";
