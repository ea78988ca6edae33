/**
 * The transports a test runs against on the current runtime: Node's
 * `net` and the default everywhere, plus `Deno.connect` on Deno and
 * `Bun.connect` on Bun.
 *
 * @module
 */

import {
  bunTransport,
  defaultTransport,
  denoTransport,
  nodeTransport,
  type Transport,
} from "../../mod.ts";

const g = globalThis as Record<string, unknown>;

/** `[name, make]` of every transport this runtime has. */
export const TRANSPORTS: [string, () => Transport][] = [
  ["node", nodeTransport],
  ["default", defaultTransport],
];
if (typeof g.Deno === "object") TRANSPORTS.push(["deno", denoTransport]);
if (typeof g.Bun === "object") TRANSPORTS.push(["bun", bunTransport]);
