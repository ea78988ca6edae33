/**
 * The C helpers of the server-vs-server section: `bench/loadgen.c`, an epoll
 * load generator that speaks the eLock protocol (one thread, one
 * outstanding command per connection), and `bench/echo.c`, a server that
 * answers every line with `200 OK`. {@linkcode buildNative} compiles both
 * with the machine's `cc -O2` into a temporary directory at the start of a
 * run; without a compiler the bench uses its JavaScript load generator and
 * has no echo server, and says so in the results.
 *
 * @module
 */

import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { Target } from "./measure.ts";

/** The built helpers. */
export interface NativeTools {
  /** Path of the load generator binary. */
  readonly loadgen: string;
  /** Path of the echo server binary. */
  readonly echo: string;
  /** The compiler that built them, as invoked. */
  readonly compiler: string;
  /** Removes the binaries. */
  dispose(): void;
}

/** What {@linkcode buildNative} gives: the helpers, or why there are none. */
export type NativeBuild =
  | { readonly tools: NativeTools; readonly reason?: undefined }
  | { readonly tools: null; readonly reason: string };

/** Where bench/loadgen.c is: beside this module, or under bench/ of the working directory (Node runs a compiled copy). */
function sourceDir(): string | null {
  const candidates = [join(process.cwd(), "bench")];
  try {
    candidates.unshift(dirname(fileURLToPath(import.meta.url)));
  } catch {
    // Not a file: URL.
  }
  return candidates.find((dir) => existsSync(join(dir, "loadgen.c"))) ?? null;
}

function run(
  file: string,
  args: readonly string[],
  timeoutMs: number,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      if (error !== null) {
        const detail = String(stderr).trim();
        reject(Object.assign(error, { detail }));
      } else resolve({ stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/**
 * Compiles bench/loadgen.c and bench/echo.c with `cc` (or `$CC`, or
 * `options.cc`), `-O2`, into a fresh temporary directory.
 *
 * @example
 * ```ts
 * const { tools, reason } = await buildNative();
 * if (tools === null) console.log(`JavaScript load generator: ${reason}`);
 * else tools.dispose();
 * ```
 */
export async function buildNative(options: { readonly cc?: string } = {}): Promise<NativeBuild> {
  if (process.platform !== "linux") {
    return {
      tools: null,
      reason: `the C load generator needs Linux (epoll), not ${process.platform}`,
    };
  }
  const cc = options.cc ?? process.env.CC ?? "cc";
  const dir = sourceDir();
  if (dir === null) return { tools: null, reason: "bench/loadgen.c not found" };
  const out = mkdtempSync(join(tmpdir(), "elock-bench-"));
  const dispose = () => rmSync(out, { recursive: true, force: true });
  try {
    await Promise.all(
      ["loadgen", "echo"].map((name) =>
        run(cc, ["-O2", "-o", join(out, name), join(dir, `${name}.c`)], 60_000)
      ),
    );
  } catch (error) {
    dispose();
    const e = error as { code?: unknown; detail?: string; message?: string };
    return {
      tools: null,
      reason: e.code === "ENOENT"
        ? `no C compiler (${cc} not found)`
        : `${cc} failed: ${(e.detail || e.message || String(error)).slice(0, 300)}`,
    };
  }
  return {
    tools: { loadgen: join(out, "loadgen"), echo: join(out, "echo"), compiler: cc, dispose },
  };
}

/** One run of the C load generator: interleaved rounds over several servers. */
export interface LoadgenOptions {
  /** `pairs`: lock/unlock on a key per connection; `hot`: every connection on one key, waiting. */
  readonly mode: "pairs" | "hot";
  /** Connections to each server, open for the whole run. */
  readonly connections: number;
  /** The warm-up of each server before the first round, ms. */
  readonly warmupMs: number;
  /** How long each server is loaded in a round, ms. */
  readonly roundMs: number;
  /** Rounds; in each, every server in turn, the order rotating. */
  readonly rounds: number;
}

/** What the C load generator found for one server in one round. */
export interface LoadgenFigures {
  /** The index of the server in the targets given. */
  readonly target: number;
  readonly round: number;
  readonly mode: "pairs" | "hot";
  readonly connections: number;
  readonly seconds: number;
  /** Replies per second (a lock/unlock pair is two). */
  readonly opsPerSec: number;
  /** Latency of one command, ms (in `hot` mode, a lock's includes its wait). */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** `hot` only: grants per second and the hand-off time (unlock sent → next grant), ms. */
  readonly grantsPerSec?: number;
  readonly handoffP50Ms?: number;
  readonly handoffP99Ms?: number;
}

/**
 * Runs the C load generator once against `targets` (IPv4 hosts): it keeps
 * `connections` connections open to each, warms each up, then loads them in
 * turn for `rounds` rounds. Resolves to one entry per round and server.
 *
 * @example
 * ```ts
 * const { tools } = await buildNative();
 * if (tools !== null) {
 *   const rounds = await runLoadgen(tools, [{ host: "127.0.0.1", port: 11400 }], {
 *     mode: "pairs", connections: 64, warmupMs: 200, roundMs: 500, rounds: 4,
 *   });
 *   console.log(rounds.map((r) => r.opsPerSec));
 *   tools.dispose();
 * }
 * ```
 */
export async function runLoadgen(
  tools: NativeTools,
  targets: readonly Target[],
  options: LoadgenOptions,
): Promise<LoadgenFigures[]> {
  const prefix = `lg${Math.random().toString(36).slice(2, 10)}`;
  const budget = targets.length * (options.warmupMs + options.rounds * (options.roundMs + 1000));
  try {
    const { stdout } = await run(tools.loadgen, [
      options.mode,
      String(options.connections),
      String(Math.round(options.warmupMs)),
      String(Math.max(1, Math.round(options.roundMs))),
      String(options.rounds),
      prefix,
      ...targets.map((t) => `${t.host}:${t.port}`),
    ], budget + 60_000);
    return stdout.trim().split("\n").filter((l) => l !== "").map((l) =>
      JSON.parse(l) as LoadgenFigures
    );
  } catch (error) {
    const detail = (error as { detail?: string }).detail;
    throw new Error(`the C load generator failed: ${detail || (error as Error).message}`);
  }
}

/** A running C echo server. */
export interface EchoServer {
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * Starts the C echo server on a free loopback port.
 *
 * @example
 * ```ts
 * const { tools } = await buildNative();
 * if (tools !== null) {
 *   const echo = await startEcho(tools);
 *   console.log(echo.port);
 *   await echo.stop();
 *   tools.dispose();
 * }
 * ```
 */
export function startEcho(tools: NativeTools): Promise<EchoServer> {
  const child = spawn(tools.echo, [], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return new Promise<EchoServer>((resolve, reject) => {
    let text = "";
    child.once("error", reject);
    child.once(
      "exit",
      (code) => reject(new Error(`the echo server exited (${code}) before it listened`)),
    );
    child.stdout!.on("data", (chunk: Uint8Array) => {
      text += new TextDecoder().decode(chunk);
      const nl = text.indexOf("\n");
      if (nl === -1) return;
      const { port } = JSON.parse(text.slice(0, nl)) as { port: number };
      resolve({
        port,
        async stop() {
          child.stdin!.end();
          child.kill("SIGTERM");
          await exited;
        },
      });
    });
  });
}
