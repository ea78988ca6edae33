/**
 * The gate: lint, format, type checks (including the runtime isolation of
 * the protocol core, client and server core), the JSR documentation lint, a
 * JSR publish dry run, an `@example` on every export, and a type check of
 * every code block of the documentation.
 * Run by `deno task check`; `deno task test` runs it first.
 *
 * @module
 */

import { heading, run } from "./_run.ts";

const ENTRY_POINTS = ["mod.ts", "src/server/mod.ts"];

const steps: Array<[string, string, string[]]> = [
  ["deno lint", Deno.execPath(), ["lint"]],
  ["deno fmt --check", Deno.execPath(), ["fmt", "--check"]],
  ["deno check (every file)", Deno.execPath(), ["check", "."]],
  [
    "runtime isolation: core type-checks with no Node/Deno/Bun types",
    "node_modules/.bin/tsc",
    ["-p", "tsconfig.core.json"],
  ],
  ["deno doc --lint", Deno.execPath(), ["doc", "--lint", ...ENTRY_POINTS]],
  ["deno publish --dry-run", Deno.execPath(), ["publish", "--dry-run", "--allow-dirty"]],
  [
    "every export has an @example",
    Deno.execPath(),
    ["run", "-A", "scripts/doc_examples.ts", ...ENTRY_POINTS],
  ],
  [
    "every code block of README.md, CONTRIBUTING.md and docs/ type-checks",
    Deno.execPath(),
    ["run", "-A", "scripts/doc_blocks.ts"],
  ],
];

/** Runs every step; resolves to the names of the steps that failed. */
export async function check(): Promise<string[]> {
  const failed: string[] = [];
  for (const [name, cmd, args] of steps) {
    heading(name);
    const { code } = await run(cmd, args);
    if (code !== 0) failed.push(name);
  }
  return failed;
}

if (import.meta.main) {
  const failed = await check();
  if (failed.length > 0) {
    console.error(`\ncheck failed: ${failed.join(", ")}`);
    Deno.exit(1);
  }
  console.log("\ncheck passed");
}
