/**
 * The README's quick start, copied as it is into the fresh project the
 * package is installed in (`quickstart.mjs`), runs against the bundled
 * server on 127.0.0.1:11400, where the quick start connects, on the runtime
 * of this pass (Node 20, 22 or 24, or Bun), and on Deno (a second or so,
 * so in every pass: the two tests share the port, so they run in one file,
 * one after the other).
 *
 * @module
 */

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { ELockClient } from "@x/elock";
import { startServer } from "@x/elock/server";
import { PROJECT, REPO } from "./project.ts";
import { runProcess } from "../support/run_process.ts";

const SLOW = { timeout: 120_000 };

/** The code block the README tells to save as `quickstart.mjs`. */
function quickStart(): string {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const at = readme.indexOf("save this as `quickstart.mjs`");
  assert.ok(at >= 0, "the README's quick start names quickstart.mjs");
  const block = /```js\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(block, "a js code block follows");
  return block[1]!;
}

/** Runs `command` in the project with the quick start saved, against a server on port 11400. */
async function runQuickStart(command: string, args: string[]): Promise<string> {
  const file = join(PROJECT, "quickstart.mjs");
  writeFileSync(file, quickStart());
  const server = await startServer({ hostname: "127.0.0.1", port: 11400 }).catch((error) => {
    throw new Error(`the quick start needs port 11400 free on 127.0.0.1: ${error}`);
  });
  try {
    const { code, stdout, stderr } = await runProcess(command, [...args, file], { cwd: PROJECT });
    assert.equal(code, 0, stderr);
    await using check = await ELockClient.connect({ port: server.port });
    assert.equal((await check.stats()).locks, 0, "nothing left locked");
    return stdout;
  } finally {
    await server.close();
  }
}

/** What the quick start prints. */
const EXPECTED = "holding invoice-42\ntotal 42, lock released\n";
const runtime = "Bun" in globalThis ? "Bun" : `Node ${process.versions.node}`;

test(`the README quick start runs as written on ${runtime}`, SLOW, async () => {
  assert.equal(await runQuickStart(process.execPath, []), EXPECTED);
});

test("the README quick start runs as written on Deno", SLOW, async () => {
  const deno = join(REPO, "node_modules", ".bin", "deno");
  assert.equal(await runQuickStart(deno, ["run", "--allow-net"]), EXPECTED);
});
