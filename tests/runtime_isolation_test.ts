import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";

// The runtime-neutral core: protocol, client and server core (the transport
// adapters for one runtime each are type-checked without runtime types too). scripts/check.ts also
// type-checks these files with no runtime types at all (tsconfig.core.json).
const CORE = [
  "src/protocol/line_splitter.ts",
  "src/protocol/limits.ts",
  "src/protocol/reply_reader.ts",
  "src/protocol/commands.ts",
  "src/errors.ts",
  "src/server/lock_table.ts",
  "src/server/dialect.ts",
  "src/server/connection.ts",
  "src/server/listener.ts",
  "src/protocol/connection.ts",
  "src/client/checks.ts",
  "src/client/client.ts",
  "src/client/events.ts",
  "src/client/held_lock.ts",
  "src/client/ledger.ts",
  "src/client/local_queue.ts",
  "src/client/lock_manager.ts",
  "src/client/options.ts",
  "src/client/pool.ts",
  "src/client/session.ts",
  "src/client/settings.ts",
  "src/client/supervisor.ts",
  "src/transport/transport.ts",
  "src/transport/socket.ts",
];

const RUNTIME_SPECIFIC = [
  /from\s+["'](node|bun|cloudflare):/,
  /import\(\s*["'](node|bun|cloudflare):/,
  /\bDeno\./,
  /\bBun\./,
  /\bprocess\./,
  /\brequire\(/,
  /\bBuffer\b/,
];

const root = new URL("../", import.meta.url);
// The Node pass runs compiled tests from .build/node/tests; sources stay at the root.
const sourceRoot = root.pathname.endsWith("/.build/node/") ? new URL("../../", root) : root;

test("server core and protocol core touch no runtime-specific API", async () => {
  for (const file of CORE) {
    // Code only: doc comments show imports of the published package.
    const text = stripComments(await readFile(new URL(file, sourceRoot), "utf8"));
    const imports = [...text.matchAll(/from\s+["']([^"']+)["']/g)].map((m) => m[1]!);
    for (const specifier of imports) {
      assert.ok(
        specifier.startsWith("./") || specifier.startsWith("../"),
        `${file} imports ${specifier}`,
      );
    }
    for (const pattern of RUNTIME_SPECIFIC) {
      assert.doesNotMatch(text, pattern, `${file} uses ${pattern}`);
    }
  }
});

test("the runtime isolation rule catches a runtime API", () => {
  const offending = ['import net from "node:net";', "Deno.listen({ port: 1 });", "Bun.listen({});"];
  for (const text of offending) {
    assert.ok(RUNTIME_SPECIFIC.some((p) => p.test(text)), text);
  }
});

/** Removes block and line comments (good enough for this project's sources). */
function stripComments(text: string): string {
  return text.replace(/\/\*[^]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

test("stripComments() keeps code and drops doc comments", () => {
  const text = '/** import { x } from "@x/elock"; */\n// Deno.exit()\nimport { y } from "./y.ts";';
  assert.equal(stripComments(text).trim(), 'import { y } from "./y.ts";');
});
