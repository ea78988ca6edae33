/**
 * consumer.ts type-checks with `tsc --strict` against the installed
 * package's types (first Node package pass only).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { PROJECT, REPO } from "./project.ts";
import { runProcess } from "../support/run_process.ts";

test(
  "a consumer type-checks with tsc --strict against the installed types",
  { timeout: 120_000 },
  async () => {
    const tsc = join(REPO, "node_modules", "typescript", "bin", "tsc");
    const { code, stdout, stderr } = await runProcess(process.execPath, [
      tsc,
      "--ignoreConfig", // the project's tsconfig.json is for the tests; the consumer has its own options
      "--strict",
      "--noEmit",
      "--target",
      "es2022",
      "--module",
      "nodenext",
      "--moduleResolution",
      "nodenext",
      "--lib",
      "es2022,esnext.disposable",
      "--types",
      "node",
      "--typeRoots",
      join(REPO, "node_modules", "@types"),
      join(PROJECT, "tests", "package", "consumer.ts"),
    ], { cwd: PROJECT });
    assert.equal(code, 0, `${stdout}${stderr}`);
  },
);
