/**
 * @x/elock: the eLock client for TypeScript, for Node, Deno, Bun and edge
 * workers, with a bundled eLock server (`@x/elock/server`).
 *
 * ```ts
 * import { DEFAULT_PORT } from "@x/elock";
 * import { startServer } from "@x/elock/server";
 *
 * await using server = await startServer({ port: 0 });
 * console.log(`eLock on ${server.port} (the usual port is ${DEFAULT_PORT})`);
 * ```
 *
 * @module
 */

export { DEFAULT_PORT } from "./src/server/mod.ts";
export type { Dialect } from "./src/server/mod.ts";
