/**
 * The package as npm installed it from the packed tarball: its manifest, its
 * files, `require()` and `import` by name, the exports map, the `elock` bin.
 *
 * @module
 */

import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { INSTALLED, PROJECT, REPO } from "./project.ts";
import { runProcess } from "../support/run_process.ts";

const SLOW = { timeout: 120_000 };

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).replaceAll("\\", "/"))
    .sort();
}

test('require("@x/elock") and require("@x/elock/server") work from CommonJS', SLOW, async () => {
  if (!("Bun" in globalThis)) {
    const [major, minor] = process.versions.node.split(".").map(Number) as [number, number];
    assert.ok(major > 20 || (major === 20 && minor >= 19), `Node ${process.versions.node}`);
  }
  const require = createRequire(join(PROJECT, "package.json"));
  const elock = require("@x/elock");
  const { startServer } = require("@x/elock/server");
  assert.equal(typeof elock.ELockClient.connect, "function");
  const esm = await import("@x/elock");
  assert.equal(elock.ELockClient, esm.ELockClient, "one module instance for require and import");
  const server = await startServer({ port: 0 });
  try {
    const client = await elock.ELockClient.connect({ port: server.port });
    try {
      assert.equal(await client.lock("k"), true);
      assert.deepEqual(await client.stats(), { clients: 1, locks: 1, monitoring: 1 });
    } finally {
      await client.close();
    }
  } finally {
    await server.close();
  }
});

test("only the entry points are exported: deep imports are refused", async () => {
  const deep = "@x/elock/src/client.js";
  await assert.rejects(import(deep));
  const require = createRequire(join(PROJECT, "package.json"));
  assert.throws(() => require(deep));
  const manifest = "@x/elock/package.json";
  assert.equal(require(manifest).name, "@x/elock");
});

test("the installed package.json describes an ES module package with the elock bin", () => {
  const pkg = JSON.parse(readFileSync(join(INSTALLED, "package.json"), "utf8"));
  assert.equal(pkg.name, "@x/elock");
  assert.match(pkg.version, /^\d+\.\d+\.\d+/);
  assert.equal(pkg.license, "MIT");
  assert.equal(typeof pkg.description, "string");
  assert.equal(pkg.type, "module");
  assert.equal(pkg.sideEffects, false);
  assert.deepEqual(pkg.exports, {
    ".": { types: "./mod.d.ts", default: "./mod.js" },
    "./server": { types: "./src/server/mod.d.ts", default: "./src/server/mod.js" },
    "./package.json": "./package.json",
  });
  assert.deepEqual(pkg.bin, { elock: "./src/cli.js" });
  assert.equal(pkg.engines.node, ">=20.19.0");
  assert.equal(pkg.dependencies, undefined, "no runtime dependencies");
  assert.match(readFileSync(join(INSTALLED, "src", "cli.js"), "utf8"), /^#!\/usr\/bin\/env node\n/);
});

test("the installed README links only to absolute addresses: files of this version on JSR, or other sites", () => {
  const pkg = JSON.parse(readFileSync(join(INSTALLED, "package.json"), "utf8"));
  const deno = JSON.parse(readFileSync(join(REPO, "deno.json"), "utf8"));
  const excluded: string[] = deno.publish.exclude;
  const readme = readFileSync(join(INSTALLED, "README.md"), "utf8");
  const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
  assert.ok(targets.length > 5, "the README has its links");
  const jsr = `https://jsr.io/${pkg.name}/${pkg.version}/`;
  for (const target of targets) {
    assert.match(target, /^(https:\/\/|#)/, `a relative link breaks on npm: ${target}`);
    if (!target.startsWith(jsr)) continue;
    const path = target.slice(jsr.length).replace(/#.*$/, "");
    assert.ok(existsSync(join(REPO, path)), `${target}: no ${path} in the repository`);
    assert.ok(
      !excluded.some((e) => path.startsWith(e.replace(/^\.?\//, ""))),
      `${target}: ${path} is not published on JSR (deno.json publish.exclude)`,
    );
  }
  assert.equal(pkg.homepage, `https://jsr.io/${pkg.name}`);
  assert.ok(pkg.keywords.includes("elock") && pkg.keywords.includes("distributed-lock"));
});

test("the installed files are what users need: JavaScript, types, maps, README, LICENSE", () => {
  const files = filesUnder(INSTALLED);
  const other = files.filter((f) =>
    !["package.json", "README.md", "LICENSE"].includes(f) &&
    !/^(mod|src\/[a-z_/]+)\.(js|d\.ts|js\.map)$/.test(f)
  );
  assert.deepEqual(other, []);
  const js = files.filter((f) => f.endsWith(".js"));
  assert.ok(js.includes("mod.js") && js.includes("src/server/mod.js") && js.includes("src/cli.js"));
  for (const file of js) {
    assert.ok(files.includes(file.replace(/\.js$/, ".d.ts")), `${file} has types`);
    assert.ok(files.includes(`${file}.map`), `${file} has a source map`);
    const map = JSON.parse(readFileSync(join(INSTALLED, `${file}.map`), "utf8"));
    assert.equal(map.sourcesContent?.length, 1, `${file}.map carries its source`);
  }
  assert.equal(files.filter((f) => /(^|\/)(tests?|examples|scripts)\//.test(f)).length, 0);
});

test("the installed JavaScript imports only node: modules and its own files", () => {
  // Static imports and exports (the line holding `from`), and import("...").
  const specifier =
    /^(?:import|export|\})[^\n]*?\bfrom\s*"([^"]+)"|^import\s*"([^"]+)"|\bimport\("([^"]+)"\)/gm;
  for (const file of filesUnder(INSTALLED).filter((f) => f.endsWith(".js"))) {
    const code = readFileSync(join(INSTALLED, file), "utf8");
    for (const match of code.matchAll(specifier)) {
      const target = match[1] ?? match[2] ?? match[3];
      assert.ok(
        target!.startsWith("node:") || /^\.\.?\/.*\.js$/.test(target!),
        `${file} imports ${target}`,
      );
    }
  }
});

test("the elock bin that npm linked runs", SLOW, async () => {
  const bin = join(PROJECT, "node_modules", ".bin", "elock");
  const { code, stdout, stderr } = await runProcess(process.execPath, [bin, "--help"]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^Usage: elock COMMAND/);
  assert.match(stdout, /^ {2}lock /m);
});
