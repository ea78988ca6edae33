/**
 * Picks the listener adapter of the runtime this code runs on. Each adapter
 * is loaded only when used, so no runtime API is touched on the others.
 *
 * @module
 */

import type { Listen } from "./listener.ts";

/** Picks the listener of the runtime this code runs on. */
export async function runtimeListen(): Promise<Listen> {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.Deno === "object" && g.Deno !== null) {
    return (await import("./listen_deno.ts")).listenDeno;
  }
  if (typeof g.Bun === "object" && g.Bun !== null) {
    return (await import("./listen_bun.ts")).listenBun;
  }
  return (await import("./listen_node.ts")).listenNode;
}
