/**
 * Runs a program to its end and collects what it printed.
 *
 * @module
 */

import { spawn } from "node:child_process";
import process from "node:process";

/** How a finished program ended, and what it printed. */
export interface Finished {
  /** Its exit code, or the signal that ended it. */
  code: number | string;
  stdout: string;
  stderr: string;
}

/** Runs `command` with `args`; `env` is added to the environment. Never times out by itself. */
export function runProcess(
  command: string,
  args: readonly string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1", ...options.env },
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (text: string) => stdout += text);
    child.stderr!.setEncoding("utf8").on("data", (text: string) => stderr += text);
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code: code ?? signal ?? "?", stdout, stderr }));
  });
}

/** The arguments that make the current runtime run `script` (Deno needs `run -A`). */
export function scriptArgs(script: string): string[] {
  return "Deno" in globalThis ? ["run", "-A", script] : [script];
}
