/**
 * The examples of examples/ that run from the source tree, each against a
 * real bundled server: the Deno script (run by Deno, with the permissions
 * its doc names) and the three lock patterns (run by the current runtime).
 * The examples that import the package by name (Node ESM and CommonJS, Bun,
 * the Cloudflare Worker) run against the installed package in the package
 * pass (tests/package/).
 *
 * @module
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ELockClient } from "../mod.ts";
import { startServer } from "../src/server/mod.ts";
import { runProcess, scriptArgs } from "./support/run_process.ts";

const SLOW = { timeout: 120_000 };

/** The repository root: the nearest folder above this file with a deno.json. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "deno.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("no deno.json above the tests");
    dir = up;
  }
  return dir;
}

/** An example beside this file's `../examples/`, compiled by tsc when this file is. */
const example = (name: string) =>
  fileURLToPath(
    new URL(
      `../examples/${import.meta.url.endsWith(".js") ? name.replace(/\.ts$/, ".js") : name}`,
      import.meta.url,
    ),
  );

test("examples/deno.ts runs on Deno with --allow-net --allow-env", SLOW, async () => {
  await using server = await startServer({ port: 0 });
  const root = repoRoot();
  const deno = "Deno" in globalThis ? process.execPath : join(root, "node_modules", ".bin", "deno");
  const { code, stdout, stderr } = await runProcess(
    deno,
    ["run", "--allow-net=127.0.0.1", "--allow-env", join(root, "examples", "deno.ts")],
    { env: { ELOCK_PORT: String(server.port) }, cwd: root },
  );
  assert.equal(code, 0, stderr);
  assert.equal(stdout, "report built under nightly-report\n");
  await using check = await ELockClient.connect({ port: server.port });
  assert.equal((await check.stats()).locks, 0, "nothing left locked");
});

test("examples/lock_patterns.ts: try/finally, await using and withLock", SLOW, async () => {
  await using server = await startServer({ port: 0 });
  const { code, stdout, stderr } = await runProcess(
    process.execPath,
    scriptArgs(example("lock_patterns.ts")),
    { env: { ELOCK_PORT: String(server.port) } },
  );
  assert.equal(code, 0, stderr);
  assert.equal(
    stdout,
    "try/finally: working on invoice-42\nawait using: working on invoice-42\nwithLock: total 42\n",
  );
  await using check = await ELockClient.connect({ port: server.port });
  assert.equal((await check.stats()).locks, 0, "nothing left locked");
});
