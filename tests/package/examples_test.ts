/**
 * The examples that import the package by name, run against the installed
 * package and a real bundled server (also from the package): Node ES
 * modules, Node CommonJS, and the three lock patterns.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ELockClient } from "@x/elock";
import { startServer } from "@x/elock/server";
import { PROJECT } from "./project.ts";
import { runProcess } from "../support/run_process.ts";

const SLOW = { timeout: 120_000 };

/** Runs `script` with the current runtime against a fresh server; checks nothing stays locked. */
async function runExample(script: string): Promise<string> {
  await using server = await startServer({ port: 0 });
  const { code, stdout, stderr } = await runProcess(process.execPath, [script], {
    env: { ELOCK_PORT: String(server.port) },
  });
  assert.equal(code, 0, stderr);
  await using check = await ELockClient.connect({ port: server.port });
  assert.equal((await check.stats()).locks, 0, "nothing left locked");
  return stdout;
}

test("examples/node_esm.mjs imports the package and locks", SLOW, async () => {
  const stdout = await runExample(join(PROJECT, "examples", "node_esm.mjs"));
  assert.equal(stdout, "invoice total computed under invoice-42\n");
});

test("examples/node_cjs.cjs requires the package and locks", SLOW, async () => {
  const stdout = await runExample(join(PROJECT, "examples", "node_cjs.cjs"));
  assert.equal(stdout, "invoice-42 locked from CommonJS\n");
});

test("examples/lock_patterns.ts runs against the package", SLOW, async () => {
  const compiled = import.meta.url.endsWith(".js");
  const script = fileURLToPath(
    new URL(`../../examples/lock_patterns.${compiled ? "js" : "ts"}`, import.meta.url),
  );
  const stdout = await runExample(script);
  assert.equal(
    stdout,
    "try/finally: working on invoice-42\nawait using: working on invoice-42\nwithLock: total 42\n",
  );
});
