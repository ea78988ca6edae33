/**
 * Type-checks every TypeScript and JavaScript code block of the README,
 * CONTRIBUTING.md and docs/ (`ts`, `js`, `mjs`, with or without `ignore`),
 * each as a module of its own, with `deno check` and the project's compiler
 * options. Run by scripts/check.ts.
 *
 * A block imports the package by its published names (`@x/elock`,
 * `npm:@x/elock`, `@x/elock/server`): they are pointed at the source
 * entry points; `cloudflare:sockets` at a stub with the type
 * `socketTransport()` takes. A block that uses `client` without making one
 * gets `declare const client: ELockClient`, as the docs say ("the examples
 * assume `client` is a connected `ELockClient`"); any other free name must be
 * declared in the block itself. Blocks of other languages (`sh`, `php`, …)
 * are counted and not checked. The modules are written to a temporary
 * folder, kept when a block fails; the README's quick start is also run, on every
 * runtime, by tests/package/quickstart_test.ts.
 *
 * @module
 */

const DOCS = ["README.md", "CONTRIBUTING.md", ...markdownIn("docs")];
const CHECKED = new Set(["ts", "js", "mjs", "typescript", "javascript"]);

function markdownIn(dir: string): string[] {
  return [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => `${dir}/${e.name}`)
    .sort();
}

/** One fenced code block: its language, first line (1-based) and text. */
export interface Block {
  /** The fence's language (`ts`, `sh`, …; `""` when none). */
  lang: string;
  /** The line of the opening fence. */
  line: number;
  /** The block's text. */
  code: string;
}

/**
 * The fenced code blocks of a Markdown text.
 *
 * @example
 * ```ts
 * blocksOf("text\n```ts\nconst a = 1;\n```\n"); // [{ lang: "ts", line: 2, code: "const a = 1;\n" }]
 * ```
 */
export function blocksOf(text: string): Block[] {
  const blocks: Block[] = [];
  let open: Block | null = null;
  text.split("\n").forEach((line, i) => {
    if (open === null) {
      const m = /^```(\S*)/.exec(line);
      if (m) open = { lang: m[1] ?? "", line: i + 1, code: "" };
    } else if (line.startsWith("```")) {
      blocks.push(open);
      open = null;
    } else {
      open.code += `${line}\n`;
    }
  });
  if (open !== null) throw new Error(`unclosed code block at line ${(open as Block).line}`);
  return blocks;
}

const root = new URL("../", import.meta.url);
const SPECIFIERS: Record<string, string> = {
  "@x/elock": new URL("mod.ts", root).href,
  "npm:@x/elock": new URL("mod.ts", root).href,
  "@x/elock/server": new URL("src/server/mod.ts", root).href,
  "cloudflare:sockets": "./cloudflare_sockets.ts",
};

function moduleOf(code: string): string {
  let body = code.replace(
    /(from\s+|import\s+)"([^"]+)"/g,
    (all, head: string, spec: string) => spec in SPECIFIERS ? `${head}"${SPECIFIERS[spec]}"` : all,
  );
  const makesClient = /\b(const|let|var|using)\s+client\b/.test(code);
  if (/\bclient\b/.test(code) && !makesClient) {
    body = `import type { ELockClient as __Client } from "${SPECIFIERS["@x/elock"]}";\n` +
      `declare const client: __Client;\n${body}`;
  }
  return `${body}\nexport {};\n`;
}

if (import.meta.main) {
  // Outside the repository: deno.json excludes .build/, and `deno check` skips excluded files.
  const OUT = await Deno.makeTempDir({ prefix: "elock-doc-blocks-" });
  await Deno.writeTextFile(
    `${OUT}/cloudflare_sockets.ts`,
    `import type { socketTransport } from "${SPECIFIERS["@x/elock"]}";\n` +
      `/** The stub of Workers' connect(), typed as socketTransport() takes it. */\n` +
      `export declare const connect: Parameters<typeof socketTransport>[0];\n`,
  );
  const files: string[] = [];
  const others: string[] = [];
  for (const doc of DOCS) {
    for (const block of blocksOf(await Deno.readTextFile(doc))) {
      if (!CHECKED.has(block.lang)) {
        others.push(`${block.lang || "plain"}`);
        continue;
      }
      const name = `${OUT}/${doc.replaceAll("/", "_").replace(/\.md$/, "")}_${block.line}.ts`;
      await Deno.writeTextFile(name, moduleOf(block.code));
      files.push(name);
    }
  }
  if (files.length === 0) {
    console.error("no code blocks found: is the file list right?");
    Deno.exit(1);
  }
  const { success } = await new Deno.Command(Deno.execPath(), {
    args: ["check", "--quiet", "--config", new URL("deno.json", root).pathname, ...files],
  }).output().then(async (out) => {
    await Deno.stdout.write(out.stdout);
    await Deno.stderr.write(out.stderr);
    return out;
  });
  const counts = Object.entries(
    others.reduce<Record<string, number>>((acc, l) => ({ ...acc, [l]: (acc[l] ?? 0) + 1 }), {}),
  ).map(([l, n]) => `${n} ${l}`).join(", ");
  if (!success) {
    console.error(`code blocks fail to type-check (files in ${OUT}, named FILE_LINE.ts)`);
    Deno.exit(1);
  }
  await Deno.remove(OUT, { recursive: true });
  console.log(
    `${files.length} TypeScript/JavaScript code blocks of ${DOCS.length} files type-check` +
      (counts ? ` (not checked: ${counts})` : ""),
  );
}
