/**
 * What the bench needs to know of the runtime it runs on: its name and
 * version, its memory, and a way to collect garbage before measuring it.
 *
 * @module
 */

import process from "node:process";
import type { MemorySample } from "./workloads.ts";

/** A runtime the bench runs on. */
export type RuntimeName = "deno" | "bun" | "node";

/** The runtime this code runs on. */
export function runtimeName(): RuntimeName {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.Deno === "object" && g.Deno !== null) return "deno";
  if (typeof g.Bun === "object" && g.Bun !== null) return "bun";
  return "node";
}

/** The version of the runtime this code runs on. */
export function runtimeVersion(): string {
  const g = globalThis as Record<string, unknown>;
  const deno = g.Deno as { version?: { deno?: string } } | undefined;
  if (deno?.version?.deno) return deno.version.deno;
  const bun = g.Bun as { version?: string } | undefined;
  if (bun?.version) return bun.version;
  return process.versions.node ?? "unknown";
}

/** Collects garbage if the runtime lets this process do so (Bun always; V8 with --expose-gc). */
export async function collectGarbage(): Promise<void> {
  const g = globalThis as Record<string, unknown>;
  const bun = g.Bun as { gc?: (force: boolean) => void } | undefined;
  const gc = g.gc as (() => void) | undefined;
  for (let i = 0; i < 2; i++) {
    if (typeof bun?.gc === "function") bun.gc(true);
    else if (typeof gc === "function") gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** This process's resident set size and JS heap in use, in bytes. */
export function memorySample(): MemorySample {
  const usage = process.memoryUsage();
  return { rss: usage.rss, heapUsed: usage.heapUsed };
}
