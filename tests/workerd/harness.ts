/**
 * Runs a Worker inside workerd through Miniflare, with the library's
 * JavaScript as tsc compiled it (`.build/node/mod.js` and the modules it
 * imports) beside it. Shared by the tests of tests/workerd/.
 *
 * @module
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** A date at which `connect()` of `cloudflare:sockets` works in this workerd. */
export const COMPATIBILITY_DATE = "2026-04-01";

/** The tsc output root: this file runs as `<root>/tests/workerd/harness.js`. */
export const BUILD_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The Worker's module path, inside the build root so `../../mod.js` resolves. */
export const WORKER_PATH = join(BUILD_ROOT, "tests", "workerd", "worker.js");

/** A relative specifier in `... from "./x.js"`, `import "./x.js"` or `import("./x.js")`. */
const RELATIVE_SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s*)"(\.{1,2}\/[^"]+)"/gm;

/** Comment lines of tsc's output (JSDoc examples hold `import` lines too). */
const COMMENT_LINE = /^\s*(?:\/\/|\/\*|\*).*$/gm;

/**
 * The library's modules a Worker loads through `mod.js`: every relative
 * `import`/`export ... from` and `import("...")` of the compiled files,
 * followed from `mod.js`, with their paths.
 */
export async function libraryModules(): Promise<string[]> {
  const entry = join(BUILD_ROOT, "mod.js");
  if (!existsSync(entry)) {
    throw new Error(`${entry} is missing: run this file from tsc's output (deno task test)`);
  }
  const found = new Set<string>([entry]);
  const queue = [entry];
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    const code = (await readFile(file, "utf8")).replace(COMMENT_LINE, "");
    for (const match of code.matchAll(RELATIVE_SPECIFIER)) {
      const target = resolve(dirname(file), match[1]!);
      if (!found.has(target)) {
        found.add(target);
        queue.push(target);
      }
    }
  }
  return [...found];
}

/**
 * Starts Miniflare with a Worker of `source` (its module at
 * {@linkcode WORKER_PATH}), runs `fn` with a way to GET `/?QUERY` from it,
 * and disposes it. Miniflare is imported here, at the first call, so a test
 * can set `NODE_EXTRA_CA_CERTS` before (Miniflare reads it when loaded).
 */
export async function withWorker(
  source: string,
  fn: (get: (query: string) => Promise<unknown>) => Promise<void>,
): Promise<void> {
  const { Miniflare } = await import("miniflare");
  const modules = await libraryModules();
  const mf = new Miniflare({
    modules: [
      { type: "ESModule", path: WORKER_PATH, contents: source },
      ...modules.map((path) => ({ type: "ESModule" as const, path })),
    ],
    modulesRoot: BUILD_ROOT,
    compatibilityDate: COMPATIBILITY_DATE,
  });
  try {
    await fn(async (query) => {
      const response = await mf.dispatchFetch(`http://worker.test/?${query}`);
      const body = await response.text();
      assert.equal(response.status, 200, `the Worker answered ${response.status}: ${body}`);
      return JSON.parse(body);
    });
  } finally {
    await mf.dispose();
  }
}
