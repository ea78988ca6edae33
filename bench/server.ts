/**
 * A bundled eLock server in its own process, for bench/run.ts: starts on a
 * free loopback port and prints `{"port":P,"controlPort":C,...}` as one
 * line. The control port answers each `mem` line with the process's memory
 * as a JSON line (after a garbage collection where the runtime allows one).
 * Exits when its standard input ends (the harness went away).
 *
 * Run with: deno run -A --v8-flags=--expose-gc bench/server.ts [dialect]
 *           bun bench/server.ts, node --expose-gc .build/bench/bench/server.js
 *
 * @module
 */

import { createServer, type Socket } from "node:net";
import process from "node:process";
import { startServer } from "../src/server/mod.ts";
import { collectGarbage, memorySample, runtimeName, runtimeVersion } from "./runtime.ts";

const dialect = process.argv[2] === "original" ? "original" : "extended";
const server = await startServer({ hostname: "127.0.0.1", port: 0, dialect });

const control = createServer((socket: Socket) => {
  let pending = "";
  socket.on("data", async (chunk: Uint8Array) => {
    pending += new TextDecoder().decode(chunk);
    let nl: number;
    while ((nl = pending.indexOf("\n")) !== -1) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line === "mem") {
        await collectGarbage();
        socket.write(`${JSON.stringify(memorySample())}\n`);
      }
    }
  });
  socket.on("error", () => {});
});
await new Promise<void>((resolve) => control.listen(0, "127.0.0.1", resolve));
const address = control.address();
if (address === null || typeof address === "string") throw new Error("control port not bound");

process.stdout.write(
  `${
    JSON.stringify({
      port: server.port,
      controlPort: address.port,
      runtime: runtimeName(),
      version: runtimeVersion(),
      pid: process.pid,
    })
  }\n`,
);

const stop = async () => {
  control.close();
  await server.close();
  process.exit(0);
};
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
