/**
 * The `elock` command line as a real child process of the current runtime
 * (Deno, Bun or Node). Runs `src/cli.ts` (or tsc's `src/cli.js`) beside the
 * tests, or the file named by the `ELOCK_CLI` environment variable: the
 * package pass points it at the installed package's `elock` bin.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

const CLI = process.env.ELOCK_CLI ?? fileURLToPath(
  new URL("../../src/cli." + (import.meta.url.endsWith(".js") ? "js" : "ts"), import.meta.url),
);
/** Generous: a cold runtime start on a loaded CI machine can take seconds. */
export const WAIT_MS = 30_000;
/** Bun's test runner stops a test after 5 s unless told otherwise. */
export const SLOW = { timeout: 4 * WAIT_MS };

/** How to start a {@linkcode Cli}. */
export interface CliOptions {
  /** Variables added to the environment (`undefined` removes one). */
  env?: Record<string, string | undefined>;
  /** Give the process a standard input to write to (default: none). */
  stdin?: boolean;
  /** Start it in a process group of its own, led by it (default: the test's). */
  detached?: boolean;
}

/** A running `elock` process, its output collected as it arrives. */
export class Cli {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<number | string>;
  #closed = false;
  #wake: Array<() => void> = [];

  constructor(args: string[], options: CliOptions = {}) {
    const command = "Deno" in globalThis
      ? [process.execPath, "run", "-A", CLI, ...args]
      : [process.execPath, CLI, ...args];
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries({ ...process.env, ...options.env })) {
      if (value !== undefined) env[name] = value;
    }
    this.child = spawn(command[0]!, command.slice(1), {
      stdio: [options.stdin ? "pipe" : "ignore", "pipe", "pipe"],
      env,
      detached: options.detached ?? false,
    });
    this.child.stdout!.setEncoding("utf8").on("data", (text: string) => {
      this.stdout += text;
      this.#notify();
    });
    this.child.stderr!.setEncoding("utf8").on("data", (text: string) => {
      this.stderr += text;
      this.#notify();
    });
    this.exited = new Promise((resolve, reject) => {
      this.child.once("error", reject);
      // "close" comes after the output streams have ended.
      this.child.once("close", (code, signal) => {
        this.#closed = true;
        this.#notify();
        resolve(code ?? signal ?? "unknown");
      });
    });
  }

  #notify(): void {
    for (const wake of this.#wake.splice(0)) wake();
  }

  /** Waits for a whole line of standard error that matches `pattern`. */
  waitForStderr(pattern: RegExp): Promise<RegExpMatchArray> {
    return this.#waitFor("stderr", pattern);
  }

  /** Waits for a whole line of standard output that matches `pattern`. */
  waitForStdout(pattern: RegExp): Promise<RegExpMatchArray> {
    return this.#waitFor("stdout", pattern);
  }

  async #waitFor(stream: "stdout" | "stderr", pattern: RegExp): Promise<RegExpMatchArray> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const lines = this[stream].split("\n").slice(0, -1);
      const match = lines.map((line) => line.match(pattern)).find((m) => m);
      if (match) return match;
      if (this.#closed) {
        throw new Error(`elock exited before printing ${pattern}; ${stream}:\n${this[stream]}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no ${pattern} within ${WAIT_MS} ms; ${stream}:\n${this[stream]}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * Sends `signal` to the process. Uses `process.kill`: Deno's
   * `ChildProcess.kill` reports the signal as the way the child ended even
   * when the child caught it and exited with a code.
   */
  signal(signal: string): void {
    process.kill(this.child.pid!, signal);
  }

  /** Waits for the process to end; its exit code (or signal name). */
  async exit(): Promise<number | string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`elock still running after ${WAIT_MS} ms`)),
        WAIT_MS,
      );
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills the process if it is still running, and waits for it to end. */
  async dispose(): Promise<void> {
    if (!this.#closed) this.child.kill("SIGKILL");
    await this.exited.catch(() => {});
  }
}

/** Runs `elock ARGS` to the end; its exit code and output. */
export async function runCli(
  args: string[],
  options: CliOptions = {},
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const cli = new Cli(args, options);
  try {
    const code = await cli.exit();
    return { code, stdout: cli.stdout, stderr: cli.stderr };
  } finally {
    await cli.dispose();
  }
}
