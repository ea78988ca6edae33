/**
 * Picks the listener adapter of the runtime this code runs on. Each adapter
 * is loaded only when used, so no runtime API is touched on the others.
 *
 * @module
 */

import type { Listen } from "./listener.ts";

/**
 * Picks the listener of the runtime this code runs on: `Bun.listen` on Bun,
 * `Deno.listen` on Deno (raw reads into a reused buffer: about 1.25x the
 * ops/s of Deno's `node:net` and 2x its web streams, see bench/), and
 * `node:net` elsewhere.
 */
export async function runtimeListen(): Promise<Listen> {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.Bun === "object" && g.Bun !== null) {
    return (await import("./listen_bun.ts")).listenBun;
  }
  const deno = g.Deno as { listen?: unknown } | undefined;
  if (typeof deno?.listen === "function") return (await import("./listen_deno.ts")).listenDeno;
  return (await import("./listen_node.ts")).listenNode;
}
