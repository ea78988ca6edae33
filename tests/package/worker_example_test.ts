/**
 * examples/cloudflare_worker.ts inside workerd (the Cloudflare Workers
 * runtime) through Miniflare, importing the installed package by name, and
 * locking on a real bundled server over `cloudflare:sockets` (Node package
 * passes only: Miniflare runs on Node).
 *
 * @module
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { ELockClient } from "@x/elock";
import { startServer } from "@x/elock/server";
import { INSTALLED, PROJECT } from "./project.ts";

const SLOW = { timeout: 120_000 };

/** The installed modules `mod.js` loads, by following their relative imports. */
function packageModules(): string[] {
  const specifier = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s*)"(\.{1,2}\/[^"]+)"/gm;
  const found = new Set([join(INSTALLED, "mod.js")]);
  for (const file of found) {
    const code = readFileSync(file, "utf8").replace(/^\s*(?:\/\/|\/\*|\*).*$/gm, "");
    for (const [, target] of code.matchAll(specifier)) found.add(resolve(dirname(file), target!));
  }
  return [...found];
}

/** Runs `fn` with the example Worker in Miniflare, bound to the server on `port`. */
async function withWorker(port: number, fn: (mf: Miniflare) => Promise<void>): Promise<void> {
  const worker = fileURLToPath(new URL("../../examples/cloudflare_worker.js", import.meta.url));
  const mf = new Miniflare({
    modules: [
      // At the root: workerd resolves "@x/elock" against the importing module's folder.
      {
        type: "ESModule",
        path: join(PROJECT, "worker.js"),
        contents: readFileSync(worker, "utf8"),
      },
      // The bare specifier "@x/elock" names this module.
      {
        type: "ESModule",
        path: join(PROJECT, "@x", "elock"),
        contents: 'export * from "../node_modules/@x/elock/mod.js";',
      },
      ...packageModules().map((path) => ({ type: "ESModule" as const, path })),
    ],
    modulesRoot: PROJECT,
    compatibilityDate: "2026-04-01",
    bindings: { ELOCK_HOST: "127.0.0.1", ELOCK_PORT: String(port) },
  });
  try {
    await fn(mf);
  } finally {
    await mf.dispose();
  }
}

test(
  "examples/cloudflare_worker.ts locks from workerd, and answers 503 while busy",
  SLOW,
  async () => {
    await using server = await startServer({ port: 0 });
    await withWorker(server.port, async (mf) => {
      const free = await mf.dispatchFetch("http://worker.test/");
      const text = await free.text();
      assert.equal(free.status, 200, text);
      assert.match(text, /^report built under the lock, session [A-Za-z0-9_-]{16}$/);

      await using other = await ELockClient.connect({ port: server.port });
      assert.equal(await other.lock("report"), true, "the Worker released the lock");
      const busy = await mf.dispatchFetch("http://worker.test/");
      assert.equal(busy.status, 503);
      assert.equal(await busy.text(), "busy: another request holds the report lock");
    });
  },
);
