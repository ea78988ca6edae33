/**
 * Picks the listener adapter of the runtime this code runs on. Each adapter
 * is loaded only when used, so no runtime API is touched on the others.
 *
 * @module
 */

import type { Listen } from "./listener.ts";

/**
 * Picks the listener of the runtime this code runs on: `Bun.listen` on Bun,
 * `node:net` on Node and on Deno (Deno's Node compatibility serves about
 * twice as many requests as `Deno.listen`'s web streams: see bench/).
 */
export async function runtimeListen(): Promise<Listen> {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.Bun === "object" && g.Bun !== null) {
    return (await import("./listen_bun.ts")).listenBun;
  }
  return (await import("./listen_node.ts")).listenNode;
}
