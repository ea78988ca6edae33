/**
 * Runs a command, streaming its output through while keeping a copy.
 *
 * @module
 */

/** What a finished command printed and how it ended. */
export interface RunResult {
  readonly code: number;
  readonly output: string;
}

/** Runs `cmd` with `args`, echoing stdout and stderr live. */
export async function run(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string>; quiet?: boolean; cwd?: string } = {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...options.env },
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  }).spawn();
  const chunks: string[] = [];
  const pump = async (
    stream: ReadableStream<Uint8Array>,
    sink: { write(p: Uint8Array): Promise<number> },
  ) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      chunks.push(decoder.decode(chunk, { stream: true }));
      if (!options.quiet) await writeAll(sink, chunk);
    }
  };
  const [status] = await Promise.all([
    child.status,
    pump(child.stdout, Deno.stdout),
    pump(child.stderr, Deno.stderr),
  ]);
  return { code: status.code, output: chunks.join("") };
}

async function writeAll(sink: { write(p: Uint8Array): Promise<number> }, data: Uint8Array) {
  let at = 0;
  while (at < data.length) at += await sink.write(data.subarray(at));
}

/** Prints a section heading. */
export function heading(text: string): void {
  console.log(`\n=== ${text}`);
}
