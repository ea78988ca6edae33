/**
 * Picks the transport of the runtime this code runs on. Each adapter is
 * loaded only when it is used, so no runtime API is touched on the others.
 *
 * @module
 */

import type { Transport, TransportConnection, TransportConnectOptions } from "./transport.ts";

/**
 * The transport used when none is given: `net` on Node and on Deno
 * (through Deno's Node compatibility, which bench/ measured 1.6 times as
 * fast for sequential calls as `Deno.connect`'s web streams;
 * {@linkcode denoTransport} is there to pick), `Bun.connect` on Bun.
 * Elsewhere (a Worker) there is no default: pass {@linkcode socketTransport}.
 *
 * @returns the transport; it loads the adapter at its first `connect()`
 * @throws {TypeError} the runtime is none of Deno, Bun and Node
 *
 * @example
 * ```ts
 * import { defaultTransport, ELockClient } from "@x/elock";
 *
 * const client = await ELockClient.connect({ port: 11400, transport: defaultTransport() });
 * await client.close();
 * ```
 */
export function defaultTransport(): Transport {
  const runtime = detect();
  let picked: Promise<Transport> | null = null;
  return {
    async connect(options: TransportConnectOptions): Promise<TransportConnection> {
      picked ??= load(runtime);
      return await (await picked).connect(options);
    },
  };
}

function detect(): "deno" | "bun" | "node" {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.Deno === "object" && g.Deno !== null) return "deno";
  if (typeof g.Bun === "object" && g.Bun !== null) return "bun";
  const process = g.process as { versions?: { node?: string } } | undefined;
  if (typeof process?.versions?.node === "string") return "node";
  throw new TypeError(
    "No default transport on this runtime: pass one, e.g. " +
      '{ transport: socketTransport(connect) } with connect from "cloudflare:sockets"',
  );
}

async function load(runtime: "deno" | "bun" | "node"): Promise<Transport> {
  switch (runtime) {
    case "deno":
      return (await import("./node.ts")).nodeTransport();
    case "bun":
      return (await import("./bun.ts")).bunTransport();
    case "node":
      return (await import("./node.ts")).nodeTransport();
  }
}
