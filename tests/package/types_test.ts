/**
 * consumer.ts type-checks with `tsc --strict` against the installed
 * package's types (first Node package pass only): with TypeScript 7 (the
 * repository's) under each module resolution a project may use, and with
 * the oldest TypeScript the types support, 5.2 (`typescript-min` in
 * scripts/node_runtimes), also under `--module commonjs --moduleResolution
 * node`, which TypeScript 7 no longer has. And a consumer with a misspelled
 * event name fails with the diagnostic that names the event map.
 *
 * @module
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { PROJECT, REPO } from "./project.ts";
import { runProcess } from "../support/run_process.ts";

/** The repository's TypeScript (7). */
const TSC = join(REPO, "node_modules", "typescript", "bin", "tsc");

/** The oldest TypeScript the package's types support (5.2: `Symbol.asyncDispose`, `AsyncDisposable`). */
const TSC_MIN = join(
  process.env.ELOCK_TYPESCRIPT_MIN ??
    join(REPO, "scripts", "node_runtimes", "node_modules", "typescript-min"),
  "bin",
  "tsc",
);

/** `--module` and `--moduleResolution` (none: the default of that module kind). */
type Resolution = readonly [module: string, moduleResolution: string | null];

/** Runs `tsc --strict --noEmit` on `file` of the project; resolves to its exit code and output. */
async function typeCheck(
  tsc: string,
  [module, moduleResolution]: Resolution,
  file: string,
): Promise<{ code: number | string; output: string }> {
  const { code, stdout, stderr } = await runProcess(process.execPath, [
    tsc,
    // TypeScript 6 and later refuse file arguments beside the project's tsconfig.json (which is for
    // the tests) unless told to ignore it; 5 ignores it anyway, and does not know the flag.
    ...(tsc === TSC ? ["--ignoreConfig"] : []),
    "--strict",
    "--noEmit",
    "--target",
    "es2022",
    "--module",
    module,
    ...(moduleResolution === null ? [] : ["--moduleResolution", moduleResolution]),
    "--lib",
    "es2022,esnext.disposable",
    "--types",
    "node",
    "--typeRoots",
    join(REPO, "node_modules", "@types"),
    join(PROJECT, file),
  ], { cwd: PROJECT });
  return { code, output: `${stdout}${stderr}` };
}

const CONSUMER = join("tests", "package", "consumer.ts");

test(
  "a consumer type-checks with tsc --strict against the installed types: nodenext, bundler, commonjs",
  { timeout: 120_000 },
  async () => {
    const resolutions: Resolution[] = [
      ["nodenext", "nodenext"],
      ["esnext", "bundler"],
      ["commonjs", null],
    ];
    const results = await Promise.all(resolutions.map((r) => typeCheck(TSC, r, CONSUMER)));
    results.forEach(({ code, output }, i) => {
      assert.equal(code, 0, `${resolutions[i]!.join(" ")}:\n${output}`);
    });
  },
);

test(
  "a consumer type-checks with TypeScript 5.2, also with --module commonjs --moduleResolution node",
  { timeout: 120_000 },
  async () => {
    assert.ok(
      existsSync(TSC_MIN),
      `no TypeScript 5.2 at ${TSC_MIN}: run npm ci --prefix scripts/node_runtimes`,
    );
    const version = await runProcess(process.execPath, [TSC_MIN, "--version"], { cwd: PROJECT });
    assert.match(version.stdout, /^Version 5\.2\./);
    const resolutions: Resolution[] = [
      // node10: `@x/elock/server` has its types only through typesVersions there.
      ["commonjs", "node"],
      ["nodenext", "nodenext"],
      ["esnext", "bundler"],
    ];
    const results = await Promise.all(resolutions.map((r) => typeCheck(TSC_MIN, r, CONSUMER)));
    results.forEach(({ code, output }, i) => {
      assert.equal(code, 0, `${resolutions[i]!.join(" ")}:\n${output}`);
    });
  },
);

test("a misspelled event name fails tsc, naming the event map", { timeout: 120_000 }, async () => {
  const file = "misspelled_event.ts";
  await writeFile(
    join(PROJECT, file),
    [
      'import { ELockClient } from "@x/elock";',
      "export function listen(client: ELockClient): void {",
      '  client.addEventListener("sesionlost", () => {});',
      "}",
      "",
    ].join("\n"),
  );
  try {
    const { code, output } = await typeCheck(TSC, ["nodenext", "nodenext"], file);
    assert.notEqual(code, 0, output);
    assert.match(
      output,
      /misspelled_event\.ts\(3,27\): error TS2345: Argument of type '"sesionlost"' is not assignable to parameter of type 'keyof ELockClientEventMap'/,
    );
    assert.equal(output.match(/error TS/g)?.length, 1, `only that error:\n${output}`);
  } finally {
    await rm(join(PROJECT, file), { force: true });
  }
});
