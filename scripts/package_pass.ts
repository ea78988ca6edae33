/**
 * The package passes of `deno task test`: the npm package as users get it.
 *
 * 1. Builds it (scripts/build_npm.ts) and packs it with `npm pack`.
 * 2. Installs the tarball into a fresh project, `.build/package/` (npm,
 *    no registry needed: the package has no dependencies).
 * 3. Adds two one-line files to that project, `mod.ts` (`export * from
 *    "@x/elock"`) and `src/server/mod.ts` (`export * from
 *    "@x/elock/server"`), and copies in, unchanged, every test file whose
 *    imports reach only those two entry points and tests/support/, plus
 *    tests/package/ and the examples. So the suite's own tests run against
 *    the installed package, and the CLI tests run its `elock` bin.
 * 4. Compiles that project with tsc against the installed `.d.ts` files
 *    (which type-checks the tests against the published types), then runs
 *    it on Node 20 (the machine's), Node 22 and Node 24 (binaries from the
 *    npm registry, scripts/node_runtimes/) and Bun (the TypeScript as is).
 *
 * @module
 */

import { buildNpm, NPM_DIR } from "./build_npm.ts";
import { heading, run } from "./_run.ts";

/** The outcome of one package pass, as scripts/test.ts sums it. */
export interface PackagePass {
  readonly runtime: string;
  passed: number;
  failed: number;
  problem?: string;
}

/** The project the package is installed in. */
const PROJECT = ".build/package";

/** Test files of tests/ that the package passes leave out: they test the source tree, or take long and test nothing of the package. */
const SOURCE_TREE_ONLY = new Set([
  // Runs the Deno example from the repository; tests/package/examples_test.ts covers the rest.
  "examples_test.ts",
  // Reads the source files of src/.
  "runtime_isolation_test.ts",
  // Long (about 35 s) and tests the client's behaviour, not the package: once per runtime is enough.
  "fault_history_test.ts",
  // Long (about 30, 15 and 40 s) and test the server's limits and its etcd store in process, not
  // the package: once per runtime is enough. The package's `elock server --store etcd` still runs
  // in every pass (etcd_server_test.ts), and so do the transcripts on both stores.
  "server_conn_hardening_test.ts",
  "server_table_hardening_test.ts",
  "etcd_store_test.ts",
  // The semantics suite on the etcd store (about 30 s): the memory-store run of the same suite
  // runs against the package.
  "server_semantics_etcd_test.ts",
]);

/**
 * Long behavioural suites (faults, chaos, races, hostile input, transcripts,
 * the etcd store, signals): plain JavaScript whose outcome does not depend
 * on the Node version. They run against the package on Node 20 and Bun;
 * the Node 22 and 24 passes run the rest (the client, transports, CLI,
 * examples, types, tests/package/).
 */
const FIRST_NODE_AND_BUN = new Set([
  "abort_race_test.ts",
  "chaos_test.ts",
  "cli_lock_signals_test.ts",
  "contention_test.ts",
  "etcd_server_test.ts",
  "fencing_test.ts",
  "hostile_input_test.ts",
  "lock_truth_loss_test.ts",
  "lock_truth_test.ts",
  "review_test.ts",
  "transcripts_test.ts",
]);

/** tests/package/ files that run only in some passes; the others run in every pass. */
const ONLY_IN: Record<string, (runtime: "node" | "bun", first: boolean) => boolean> = {
  "bun_example_test.ts": (runtime) => runtime === "bun",
  "worker_example_test.ts": (runtime) => runtime === "node",
  "types_test.ts": (runtime, first) => runtime === "node" && first,
};

/** The examples copied into the project (the Deno one runs from the repository). */
const EXAMPLES = [
  "demo.ts",
  "lock_patterns.ts",
  "node_esm.mjs",
  "node_cjs.cjs",
  "bun.ts",
  "cloudflare_worker.ts",
];

/** The entry points the project's shims stand in for, and what they re-export. */
const SHIMS: Record<string, string> = {
  "mod.ts": "@x/elock",
  "src/server/mod.ts": "@x/elock/server",
};

/** The relative specifier of a static `import`/`export ... from` (the line holding `from`). */
const RELATIVE_IMPORT = /^(?:import|export|\})[^\n]*?(?:\bfrom\s*|^import\s*)"(\.{1,2}\/[^"]+)"/gm;

function normalize(path: string): string {
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "..") parts.pop();
    else if (part !== "." && part !== "") parts.push(part);
  }
  return parts.join("/");
}

/**
 * Whether `file` (relative to the repository) and what it imports reach only
 * tests/ and the shimmed entry points.
 */
function reachesOnlyPublicApi(file: string, seen = new Set<string>()): boolean {
  if (seen.has(file)) return true;
  seen.add(file);
  for (const [, target] of Deno.readTextFileSync(file).matchAll(RELATIVE_IMPORT)) {
    const path = normalize(`${file.slice(0, file.lastIndexOf("/"))}/${target}`);
    if (path in SHIMS) continue;
    if (!path.startsWith("tests/") || !reachesOnlyPublicApi(path, seen)) return false;
  }
  return true;
}

/** The top-level test files that run against the package. */
export function packageTestFiles(): string[] {
  return [...Deno.readDirSync("tests")]
    .filter((e) => e.isFile && e.name.endsWith("_test.ts") && !SOURCE_TREE_ONLY.has(e.name))
    .map((e) => e.name)
    .filter((name) => reachesOnlyPublicApi(`tests/${name}`))
    .sort();
}

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) await copyDir(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

/** Packs npm/, installs the tarball into the project, lays out the tests; resolves to a problem. */
async function setUp(tests: string[]): Promise<string | null> {
  const problems = await buildNpm();
  if (problems.length > 0) return problems.join("; ");
  await Deno.remove(PROJECT, { recursive: true }).catch(() => {});
  await Deno.mkdir(PROJECT, { recursive: true });
  const project = await Deno.realPath(PROJECT);

  heading(`package: npm pack, then npm install of the tarball into ${PROJECT}`);
  const pack = await run("npm", ["pack", "--pack-destination", project], { cwd: NPM_DIR });
  if (pack.code !== 0) return "npm pack failed";
  const tarball = [...Deno.readDirSync(project)].find((e) => e.name.endsWith(".tgz"))?.name;
  if (tarball === undefined) return "npm pack wrote no tarball";
  await Deno.writeTextFile(
    `${PROJECT}/package.json`,
    JSON.stringify({ name: "elock-package-tests", private: true, type: "module" }, null, 2),
  );
  const install = await run(
    "npm",
    ["install", "--no-audit", "--no-fund", "--no-package-lock", `./${tarball}`],
    { cwd: project },
  );
  if (install.code !== 0) return "npm install of the tarball failed";

  for (const [file, target] of Object.entries(SHIMS)) {
    const path = `${PROJECT}/${file}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, `export * from "${target}";\n`);
  }
  await Deno.mkdir(`${PROJECT}/tests`, { recursive: true });
  for (const file of tests) await Deno.copyFile(`tests/${file}`, `${PROJECT}/tests/${file}`);
  for (const dir of ["support", "fixtures", "package"]) {
    await copyDir(`tests/${dir}`, `${PROJECT}/tests/${dir}`);
  }
  await Deno.mkdir(`${PROJECT}/examples`, { recursive: true });
  for (const file of EXAMPLES) {
    await Deno.copyFile(`examples/${file}`, `${PROJECT}/examples/${file}`);
  }

  heading("package: tsc of the tests and examples against the installed types");
  const base = JSON.parse(await Deno.readTextFile("tsconfig.json")) as {
    compilerOptions: Record<string, unknown>;
  };
  const tsconfig = {
    compilerOptions: { ...base.compilerOptions, rootDir: ".", outDir: "out" },
    include: ["mod.ts", "src", "tests", "examples"],
    exclude: ["tests/package/consumer.ts"],
  };
  await Deno.writeTextFile(`${PROJECT}/tsconfig.json`, JSON.stringify(tsconfig, null, 2));
  const tsc = await run("node_modules/.bin/tsc", ["-p", `${PROJECT}/tsconfig.json`]);
  if (tsc.code !== 0) return "tsc of the package tests failed";
  await copyDir(`${PROJECT}/tests/fixtures`, `${PROJECT}/out/tests/fixtures`);
  return null;
}

function count(output: string, pattern: RegExp): number | null {
  const last = [...output.matchAll(pattern)].at(-1);
  return last === undefined ? null : Number(last[1]);
}

/**
 * The Node 22 or Node 24 binary of scripts/node_runtimes for this machine, if npm installed one.
 * Only these passes need them (about 370 MB), so `npm ci` at the root does not bring them:
 * {@linkcode installRegistryNodes} does, the first time the package passes run.
 */
function registryNode(major: 22 | 24): string | null {
  const cpu = ({ x86_64: "x64", aarch64: "arm64" } as Record<string, string>)[Deno.build.arch];
  const path = `scripts/node_runtimes/node_modules/node${major}-${Deno.build.os}-${cpu}/bin/node`;
  return exists(path) ? path : null;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Installs Node 22 and 24 and the oldest supported TypeScript into scripts/node_runtimes (from its
 * lock file) unless they are there.
 */
async function installRegistryNodes(): Promise<void> {
  const typescriptMin = exists("scripts/node_runtimes/node_modules/typescript-min/package.json");
  if (registryNode(22) !== null && registryNode(24) !== null && typescriptMin) return;
  heading(
    "package: installing Node 22 and 24 and TypeScript 5.2 (npm ci in scripts/node_runtimes, about 390 MB)",
  );
  const { code } = await run("npm", [
    "ci",
    "--prefix",
    "scripts/node_runtimes",
    "--no-audit",
    "--no-fund",
  ]);
  if (code !== 0) console.error(`npm ci in scripts/node_runtimes exited with ${code}`);
}

/**
 * Runs every package pass.
 *
 * @returns one pass per runtime (or one failed pass when the package could not be set up)
 */
export async function packagePasses(): Promise<PackagePass[]> {
  const tests = packageTestFiles();
  heading(`package: ${tests.length} test files run against the installed package`);
  console.log(tests.join(" "));
  const problem = await setUp(tests);
  if (problem !== null) return [{ runtime: "npm package", passed: 0, failed: 0, problem }];
  const project = await Deno.realPath(PROJECT);
  const env = {
    ELOCK_PACKAGE_PROJECT: project,
    ELOCK_REPO_ROOT: Deno.cwd(),
    ELOCK_CLI: `${project}/node_modules/.bin/elock`,
  };
  const packageTests = [...Deno.readDirSync("tests/package")]
    .filter((e) => e.isFile && e.name.endsWith("_test.ts"))
    .map((e) => e.name)
    .sort();
  const files = (runtime: "node" | "bun", first: boolean) => [
    ...tests.filter((f) => runtime === "bun" || first || !FIRST_NODE_AND_BUN.has(f)),
    ...packageTests.filter((f) => ONLY_IN[f]?.(runtime, first) ?? true).map((f) => `package/${f}`),
  ];

  const passes: PackagePass[] = [];
  await installRegistryNodes();
  const nodes: Array<[string, string | null]> = [
    ["Node 20", "node"],
    ["Node 22", registryNode(22)],
    ["Node 24", registryNode(24)],
  ];
  for (const [name, node] of nodes) {
    if (node === null) {
      passes.push({
        runtime: `package on ${name}`,
        passed: 0,
        failed: 0,
        problem:
          `no ${name} binary for ${Deno.build.os}-${Deno.build.arch} in scripts/node_runtimes`,
      });
      continue;
    }
    const version = (await run(node, ["--version"], { quiet: true })).output.trim();
    heading(`package on Node ${version}: node --test on the compiled tests`);
    const { code, output } = await run(node, [
      "--test",
      "--test-reporter=spec",
      ...files("node", passes.length === 0).map((f) =>
        `${PROJECT}/out/tests/${f.replace(/\.ts$/, ".js")}`
      ),
    ], { env });
    const pass: PackagePass = {
      runtime: `package on Node ${version}`,
      passed: count(output, /^ℹ pass (\d+)/gm) ?? 0,
      failed: count(output, /^ℹ fail (\d+)/gm) ?? 0,
    };
    if (code !== 0 && pass.failed === 0) pass.problem = `node --test exited with ${code}`;
    passes.push(pass);
  }

  const bun = (await run("node_modules/.bin/bun", ["--version"], { quiet: true })).output.trim();
  heading(`package on Bun ${bun}: bun test on the TypeScript tests`);
  const { code, output } = await run("node_modules/.bin/bun", [
    "test",
    "--timeout",
    "120000",
    ...files("bun", false).map((f) => `./${PROJECT}/tests/${f}`),
  ], { env });
  const pass: PackagePass = {
    runtime: `package on Bun ${bun}`,
    passed: count(output, /^\s*(\d+) pass$/gm) ?? 0,
    failed: count(output, /^\s*(\d+) fail$/gm) ?? 0,
  };
  if (code !== 0 && pass.failed === 0) pass.problem = `bun test exited with ${code}`;
  passes.push(pass);
  return passes;
}
