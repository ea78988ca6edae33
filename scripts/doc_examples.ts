/**
 * Fails when an export of an entry point has no `@example` in its JSDoc
 * (`deno doc --lint` checks that docs exist, not that they show use).
 * Run by scripts/check.ts: `deno run -A scripts/doc_examples.ts mod.ts ...`.
 *
 * @module
 */

interface DocTag {
  kind: string;
}
interface DocDeclaration {
  kind: string;
  jsDoc?: { tags?: DocTag[] };
}
interface DocSymbol {
  name: string;
  declarations: DocDeclaration[];
}
interface DocJson {
  nodes: Record<string, { symbols?: DocSymbol[] }>;
}

/** The documentation of one entry point (one at a time: together, re-exports lose their docs). */
async function docOf(entry: string): Promise<DocJson> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", entry],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!output.success) {
    console.error(`deno doc --json ${entry} failed`);
    Deno.exit(1);
  }
  return JSON.parse(new TextDecoder().decode(output.stdout)) as DocJson;
}

const missing: string[] = [];
let count = 0;
const nodes = [];
for (const entry of Deno.args) nodes.push(...Object.entries((await docOf(entry)).nodes));
for (const [file, node] of nodes) {
  for (const symbol of node.symbols ?? []) {
    for (const declaration of symbol.declarations) {
      count++;
      const tags = declaration.jsDoc?.tags ?? [];
      if (!tags.some((tag) => tag.kind === "example")) {
        missing.push(`${file.replace(/^.*\/work\/[^/]+\//, "")}: ${symbol.name}`);
      }
    }
  }
}
if (count === 0) {
  console.error("no exported symbols found: is the entry list right?");
  Deno.exit(1);
}
if (missing.length > 0) {
  console.error(`exports without an @example:\n  ${missing.join("\n  ")}`);
  Deno.exit(1);
}
console.log(`${count} exported declarations, each with an @example`);
