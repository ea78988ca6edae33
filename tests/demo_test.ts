/**
 * `npm run demo` (examples/demo.ts), run as a real child process of the
 * current runtime: it exits 0 and shows each part of the story.
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const DEMO = fileURLToPath(
  new URL(
    "../examples/demo." + (import.meta.url.endsWith(".js") ? "js" : "ts"),
    import.meta.url,
  ),
);

test("the demo runs against the bundled server and exits 0", { timeout: 120_000 }, async () => {
  const args = "Deno" in globalThis ? ["run", "-A", DEMO] : [DEMO];
  const child = spawn(process.execPath, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1" },
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (text: string) => stdout += text);
  child.stderr!.setEncoding("utf8").on("data", (text: string) => stderr += text);
  const code = await new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (exitCode, signal) => resolve(exitCode ?? signal));
  });
  assert.equal(code, 0, stderr);
  assert.match(stdout, /listening on 127\.0\.0\.1:\d+/);
  assert.match(stdout, /bob: {3}lock\("invoice-42"\) +-> false/, "two clients contend");
  assert.match(stdout, /bob: {3}\.\.\. granted +-> true/, "a wait that succeeds");
  assert.match(stdout, /bob: {3}DeadlockError: Deadlock: #\S+ => ledger = #\S+ => journal = #\S+/);
  assert.match(stdout, /carol: lockValue\("schema", "write"\) +-> false/, "value locks");
  assert.match(stdout, /\{"clients":3,"locks":1,"monitoring":3\}/, "stats");
  assert.match(stdout, /LOCK schema held by #\S+, #\S+ with value read/, "debug");
});
