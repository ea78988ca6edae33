/**
 * `deno task test`: the gate (scripts/check.ts), then the whole test suite on
 * Deno, Bun and Node (the Node pass runs JavaScript compiled by tsc from the
 * same sources), then the workerd tests (tests/workerd/: the compiled client
 * inside workerd, through Miniflare, run by `node --test`), then the package
 * passes (scripts/package_pass.ts: the npm package built, packed, installed
 * into a fresh project and tested there on Node 20, 22 and 24 and Bun). Ends
 * with one summary line over every pass: `N passed, N failed`. Fails if any
 * pass fails or runs zero tests.
 *
 * Flags: `--no-check` skips the gate; `--only=deno,bun,node,workerd,package`
 * picks passes.
 *
 * @module
 */

import { check } from "./check.ts";
import { heading, run } from "./_run.ts";
import { packagePasses } from "./package_pass.ts";

interface Pass {
  readonly runtime: string;
  passed: number;
  failed: number;
  problem?: string;
}

const args = new Set(Deno.args);
const only = Deno.args.find((a) => a.startsWith("--only="))?.slice(7).split(",");
const wanted = (runtime: string) => only === undefined || only.includes(runtime);

function testFiles(dir: string): string[] {
  return [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && e.name.endsWith("_test.ts"))
    .map((e) => e.name)
    .sort();
}

const TEST_FILES = testFiles("tests");
/**
 * Run by the Deno pass only: the semantics suite on the etcd store (about
 * 30-40 s a runtime). The store is the same code on every runtime, and its
 * runtime-specific part, the etcd gateway's transport, runs on Bun and Node
 * in etcd_store_test.ts, etcd_server_test.ts and the fault history; the same
 * suite on the memory store runs everywhere.
 */
const DENO_ONLY = new Set(["server_semantics_etcd_test.ts"]);
const OTHER_FILES = TEST_FILES.filter((f) => !DENO_ONLY.has(f));

function count(output: string, pattern: RegExp): number | null {
  const matches = [...output.matchAll(pattern)];
  const last = matches.at(-1);
  return last === undefined ? null : Number(last[1]);
}

async function denoPass(): Promise<Pass> {
  heading("Deno: deno test");
  const { code, output } = await run(Deno.execPath(), [
    "test",
    "-A",
    ...TEST_FILES.map((f) => `tests/${f}`),
  ]);
  const pass: Pass = {
    runtime: "Deno",
    passed: count(output, /(\d+) passed/g) ?? 0,
    failed: count(output, /(\d+) failed/g) ?? 0,
  };
  if (code !== 0 && pass.failed === 0) pass.problem = `deno test exited with ${code}`;
  return pass;
}

async function bunPass(): Promise<Pass> {
  heading("Bun: bun test");
  const { code, output } = await run("node_modules/.bin/bun", [
    "test",
    "--timeout",
    "120000",
    ...OTHER_FILES.map((f) => `./tests/${f}`),
  ]);
  const pass: Pass = {
    runtime: "Bun",
    passed: count(output, /^\s*(\d+) pass$/gm) ?? 0,
    failed: count(output, /^\s*(\d+) fail$/gm) ?? 0,
  };
  if (code !== 0 && pass.failed === 0) pass.problem = `bun test exited with ${code}`;
  return pass;
}

/** Compiles src/ and tests/ to .build/node once; resolves to whether tsc succeeded. */
let built: Promise<boolean> | null = null;
function build(): Promise<boolean> {
  built ??= (async () => {
    await Deno.remove(".build/node", { recursive: true }).catch(() => {});
    const { code } = await run("node_modules/.bin/tsc", ["-p", "tsconfig.json"]);
    if (code !== 0) return false;
    await copyDir("tests/fixtures", ".build/node/tests/fixtures");
    return true;
  })();
  return built;
}

async function nodePass(): Promise<Pass> {
  heading("Node: tsc, then node --test on the compiled files");
  if (!await build()) {
    return { runtime: "Node", passed: 0, failed: 0, problem: "tsc failed" };
  }
  const node = (await run("node", ["--version"], { quiet: true })).output.trim();
  const { code, output } = await run("node", [
    "--test",
    "--test-reporter=spec",
    ...OTHER_FILES.map((f) => `.build/node/tests/${f.replace(/\.ts$/, ".js")}`),
  ]);
  const pass: Pass = {
    runtime: `Node ${node}`,
    passed: count(output, /^ℹ pass (\d+)/gm) ?? 0,
    failed: count(output, /^ℹ fail (\d+)/gm) ?? 0,
  };
  if (code !== 0 && pass.failed === 0) pass.problem = `node --test exited with ${code}`;
  return pass;
}

async function workerdPass(): Promise<Pass> {
  const { version } = JSON.parse(
    await Deno.readTextFile("node_modules/miniflare/package.json"),
  ) as { version: string };
  const runtime = `workerd (miniflare ${version})`;
  heading(`workerd: node --test on the compiled tests/workerd files (Miniflare ${version})`);
  if (built === null) console.log("(no Node pass: compiling with tsc first)");
  if (!await build()) return { runtime, passed: 0, failed: 0, problem: "tsc failed" };
  // Run only here, not by the Node pass: they need tsc's output beside them.
  const files = testFiles("tests/workerd");
  if (files.length === 0) {
    return { runtime, passed: 0, failed: 0, problem: "no test file in tests/workerd" };
  }
  const { code, output } = await run("node", [
    "--test",
    "--test-reporter=spec",
    ...files.map((f) => `.build/node/tests/workerd/${f.replace(/\.ts$/, ".js")}`),
  ]);
  const pass: Pass = {
    runtime,
    passed: count(output, /^ℹ pass (\d+)/gm) ?? 0,
    failed: count(output, /^ℹ fail (\d+)/gm) ?? 0,
  };
  if (code !== 0 && pass.failed === 0) pass.problem = `node --test exited with ${code}`;
  return pass;
}

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    const src = `${from}/${entry.name}`;
    const dst = `${to}/${entry.name}`;
    if (entry.isDirectory) await copyDir(src, dst);
    else await Deno.copyFile(src, dst);
  }
}

const problems: string[] = [];
if (!args.has("--no-check")) {
  const failed = await check();
  for (const step of failed) problems.push(`check: ${step}`);
}

const passes: Pass[] = [];
if (wanted("deno")) passes.push(await denoPass());
if (wanted("bun")) passes.push(await bunPass());
if (wanted("node")) passes.push(await nodePass());
if (wanted("workerd")) passes.push(await workerdPass());
if (wanted("package")) passes.push(...await packagePasses());

heading("Summary");
for (const p of passes) {
  console.log(
    `${p.runtime}: ${p.passed} passed, ${p.failed} failed${p.problem ? ` (${p.problem})` : ""}`,
  );
  if (p.passed === 0) problems.push(`${p.runtime} ran no test`);
  if (p.problem) problems.push(`${p.runtime}: ${p.problem}`);
}
for (const problem of problems) console.log(`problem: ${problem}`);
const passed = passes.reduce((n, p) => n + p.passed, 0);
const failed = passes.reduce((n, p) => n + p.failed, 0) + problems.length;
console.log(`${passed} passed, ${failed} failed`);
Deno.exit(failed === 0 ? 0 : 1);
