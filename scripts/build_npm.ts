/**
 * `deno task build:npm`: builds the npm package into `npm/` (gitignored),
 * as dnt would, with tsc doing the compiling:
 *
 * - tsc (tsconfig.npm.json) compiles the entry points of deno.json and the
 *   CLI to ES modules with `.d.ts` files and source maps (sources inlined),
 *   rewriting the `.ts` import specifiers to `.js`
 *   (`rewriteRelativeImportExtensions`);
 * - npm/package.json is written from deno.json: name, version, description,
 *   license, repository (when deno.json has one), homepage (the JSR page),
 *   keywords, `exports` for each entry
 *   point, the `elock` bin, engines, `sideEffects: false`, `type: module`;
 * - README.md is copied with its relative links made absolute (the same
 *   files of this version on JSR), and LICENSE as it is;
 * - `npm pack --dry-run` must list only what users need: the compiled
 *   JavaScript, its types and maps, package.json, README.md and LICENSE.
 *
 * @module
 */

import { heading, run } from "./_run.ts";

/** Where the package is built. */
export const NPM_DIR = "npm";

/** The oldest Node the package supports: `require()` of ES modules works from 20.19. */
const NODE_ENGINES = ">=20.19.0";

/** The CLI, compiled; it starts with `#!/usr/bin/env node`. */
const BIN = "./src/cli.js";

interface DenoJson {
  name: string;
  version: string;
  description?: string;
  license: string;
  repository?: unknown;
  exports: Record<string, string>;
}

/** The files of `npm pack --dry-run --json`. */
interface PackReport {
  files: Array<{ path: string }>;
}

/** `./mod.ts` → `./mod.js`. */
function js(path: string): string {
  return path.replace(/\.ts$/, ".js");
}

/** `./mod.ts` → `./mod.d.ts`. */
function dts(path: string): string {
  return path.replace(/\.ts$/, ".d.ts");
}

/** The package.json of the npm package, from deno.json. */
export function npmPackageJson(deno: DenoJson): Record<string, unknown> {
  const exports: Record<string, unknown> = {};
  for (const [subpath, source] of Object.entries(deno.exports)) {
    exports[subpath] = { types: dts(source), default: js(source) };
  }
  exports["./package.json"] = "./package.json";
  const main = deno.exports["."];
  if (main === undefined) throw new Error('deno.json has no "." export');
  // `exports` is unknown to TypeScript's older resolution (`--moduleResolution node`, the
  // default of `--module commonjs`): there `@x/elock/server` finds its types through
  // `typesVersions` (and `@x/elock` through `types`).
  const subpaths: Record<string, string[]> = {};
  for (const [subpath, source] of Object.entries(deno.exports)) {
    if (subpath !== ".") subpaths[subpath.replace(/^\.\//, "")] = [dts(source)];
  }
  return {
    name: deno.name,
    version: deno.version,
    ...(deno.description === undefined ? {} : { description: deno.description }),
    license: deno.license,
    ...(deno.repository === undefined ? {} : { repository: deno.repository }),
    homepage: jsrHome(deno),
    keywords: [
      "elock",
      "lock",
      "distributed-lock",
      "mutex",
      "lock-server",
      "fencing-token",
      "etcd",
      "deno",
      "bun",
      "cloudflare-workers",
    ],
    type: "module",
    sideEffects: false,
    exports,
    main: js(main),
    types: dts(main),
    typesVersions: { "*": subpaths },
    bin: { elock: BIN },
    engines: { node: NODE_ENGINES },
  };
}

/** Where the package's files are browsable: its JSR page (docs/ and the rest of the README's links are published there). */
export function jsrHome(deno: DenoJson): string {
  return `https://jsr.io/${deno.name}`;
}

/**
 * The README for npm: its relative links (to `docs/`, `LICENSE`, …) point at
 * the same files of this version on JSR, where they are published; npm has
 * no copy of them and would resolve them against a repository.
 *
 * @example
 * ```ts
 * readmeForNpm("[API](docs/API.md#errors)", { name: "@x/elock", version: "0.1.0" });
 * // "[API](https://jsr.io/@x/elock/0.1.0/docs/API.md#errors)"
 * ```
 */
export function readmeForNpm(readme: string, deno: Pick<DenoJson, "name" | "version">): string {
  return readme.replace(/\]\((?![a-z][a-z0-9+.-]*:|#)([^)\s]+)\)/g, (_, target: string) => {
    const path = target.replace(/^\.?\//, "");
    return `](https://jsr.io/${deno.name}/${deno.version}/${path})`;
  });
}

/**
 * Whether `path` (relative to the package root) is something a user of the
 * package needs.
 */
export function isShipped(path: string): boolean {
  if (["package.json", "README.md", "LICENSE"].includes(path)) return true;
  if (!/^(mod|src\/[a-z_/]+)\.(js|js\.map|d\.ts)$/.test(path)) return false;
  return !/(^|\/)(tests?|examples|scripts)\//.test(path);
}

/**
 * Builds the package into `npm/`.
 *
 * @returns the problems found (empty when the package is good)
 */
export async function buildNpm(): Promise<string[]> {
  heading("build:npm: tsc -p tsconfig.npm.json into npm/");
  await Deno.remove(NPM_DIR, { recursive: true }).catch(() => {});
  const tsc = await run("node_modules/.bin/tsc", ["-p", "tsconfig.npm.json"]);
  if (tsc.code !== 0) return ["tsc -p tsconfig.npm.json failed"];

  const deno = JSON.parse(await Deno.readTextFile("deno.json")) as DenoJson;
  const pkg = npmPackageJson(deno);
  await Deno.writeTextFile(`${NPM_DIR}/package.json`, JSON.stringify(pkg, null, 2) + "\n");
  await Deno.writeTextFile(
    `${NPM_DIR}/README.md`,
    readmeForNpm(await Deno.readTextFile("README.md"), deno),
  );
  await Deno.copyFile("LICENSE", `${NPM_DIR}/LICENSE`);

  const problems: string[] = [];
  const { VERSION } = await import("../src/version.ts");
  if (VERSION !== deno.version) {
    problems.push(`src/version.ts says ${VERSION}, deno.json ${deno.version}: make them equal`);
  }
  const bin = await Deno.readTextFile(`${NPM_DIR}/${BIN}`);
  if (!bin.startsWith("#!/usr/bin/env node\n")) problems.push(`${BIN} has no node shebang`);

  heading("build:npm: npm pack --dry-run");
  const pack = await run("npm", ["pack", "--dry-run", "--json"], { cwd: NPM_DIR, quiet: true });
  if (pack.code !== 0) return [...problems, "npm pack --dry-run failed"];
  const [report] = JSON.parse(pack.output.slice(pack.output.indexOf("["))) as PackReport[];
  const files = report?.files.map((f) => f.path).sort() ?? [];
  for (const file of files) console.log(`  ${file}`);
  const extra = files.filter((f) => !isShipped(f));
  if (extra.length > 0) problems.push(`npm pack would ship: ${extra.join(", ")}`);
  for (const entry of [...Object.values(deno.exports), BIN]) {
    for (const file of [js(entry), dts(entry)].map((f) => f.replace(/^\.\//, ""))) {
      if (!files.includes(file)) problems.push(`npm pack would not ship ${file}`);
    }
  }
  console.log(`${files.length} files${problems.length === 0 ? ", all needed" : ""}`);
  return problems;
}

if (import.meta.main) {
  const problems = await buildNpm();
  for (const problem of problems) console.error(`build:npm: ${problem}`);
  Deno.exit(problems.length === 0 ? 0 : 1);
}
