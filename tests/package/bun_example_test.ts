/**
 * examples/bun.ts, run by Bun against the installed package (Bun pass only).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { ELockClient } from "@x/elock";
import { startServer } from "@x/elock/server";
import { PROJECT } from "./project.ts";
import { runProcess } from "../support/run_process.ts";

test("examples/bun.ts runs on Bun with await using", { timeout: 120_000 }, async () => {
  assert.ok("Bun" in globalThis, "this file runs in the Bun package pass");
  await using server = await startServer({ port: 0 });
  const { code, stdout, stderr } = await runProcess(
    process.execPath,
    ["run", join(PROJECT, "examples", "bun.ts")],
    { env: { ELOCK_PORT: String(server.port) } },
  );
  assert.equal(code, 0, stderr);
  assert.equal(stdout, `holding invoice-42 from Bun ${process.versions.bun}\n`);
  await using check = await ELockClient.connect({ port: server.port });
  assert.equal((await check.stats()).locks, 0, "the lock and session were released");
});
