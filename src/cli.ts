#!/usr/bin/env node
/**
 * The `elock` command line.
 *
 * ```sh
 * elock server --port 11400 --dialect original   # run the bundled server
 * elock stats                                    # the server's counters
 * elock debug --dot | dot -Tsvg > waits.svg      # the wait-for graph
 * elock lock nightly-report -- ./report.sh       # run a command under a lock
 * elock unlock --force nightly-report            # operator: free a key (server --admin)
 * elock --help                                   # list the commands
 * elock --version                                # the package version
 * ```
 *
 * Subcommands are entries of a table ({@linkcode Subcommand}), each with its
 * own argument parsing and help text. Exit codes: 0 on success, 1 when a
 * command fails, 2 on wrong usage; `elock lock` exits with its command's
 * code and has codes of its own (`elock lock --help`).
 *
 * @module
 */

import { realpathSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseFlags, quote } from "./cli/flags.ts";
import { debugCommand } from "./cli/debug_command.ts";
import { lockCommand } from "./cli/lock_command.ts";
import { serverCommand } from "./cli/server_command.ts";
import { statsCommand } from "./cli/stats_command.ts";
import { unlockCommand } from "./cli/unlock_command.ts";
import { VERSION } from "./version.ts";
import { type RunCommand, type Subcommand, UsageError } from "./cli/subcommand.ts";

/** Where {@linkcode main} writes, and when a running command must stop. */
export interface MainOptions {
  /** Standard output (default `process.stdout`). */
  stdout?: (text: string) => void;
  /** Standard error (default `process.stderr`). */
  stderr?: (text: string) => void;
  /**
   * Stops a running command (its abort reaches the command once, as a
   * signal named by the reason, or SIGTERM); by default the command's
   * signals do (SIGINT and SIGTERM, more for `elock lock`).
   */
  signal?: AbortSignal;
  /**
   * Whether standard error is a terminal (default: `process.stderr.isTTY`):
   * `elock lock` then says when it has to wait for its key.
   */
  stderrIsTerminal?: boolean;
}

/** The signals that stop a command that names none of its own. */
const STOP_SIGNALS: readonly string[] = ["SIGINT", "SIGTERM"];

const helpCommand: Subcommand = {
  name: "help",
  summary: "show the help of a command",
  help: `Usage: elock help [COMMAND]\n\nShows the help of COMMAND, or the list of commands.\n`,
  parse(args) {
    const { values, positionals } = parseFlags(args, { help: { type: "boolean", short: "h" } });
    if (values.help) return "help";
    const [name, extra] = positionals;
    if (extra !== undefined) throw new UsageError(`unexpected argument ${quote(extra)}`);
    const text = name === undefined ? usage() : findCommand(name).help;
    return (io) => {
      io.stdout(text);
      return Promise.resolve(0);
    };
  },
};

/** Every subcommand, in the order `elock --help` lists them. */
const COMMANDS: readonly Subcommand[] = [
  serverCommand,
  statsCommand,
  debugCommand,
  lockCommand,
  unlockCommand,
  helpCommand,
];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 3;
  const list = COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`).join("\n");
  return `Usage: elock COMMAND [options]

Tools for the eLock distributed lock protocol.

Commands:
${list}

Run "elock COMMAND --help" for the options of a command, "elock --version"
(-V) for the version.
`;
}

function findCommand(name: string): Subcommand {
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) throw new UsageError(`unknown command ${quote(name)}`);
  return command;
}

/**
 * Runs the `elock` command line.
 *
 * @param args the arguments after the program name, e.g. `["server", "--port", "0"]`
 * @param options where to write, and what stops a running command
 * @returns the exit code: 0 on success, 1 when the command failed, 2 on wrong usage
 *
 * @example Print the usage text
 * ```ts
 * const code = await main(["--help"]); // 0
 * ```
 */
export async function main(args: string[], options: MainOptions = {}): Promise<number> {
  const stdout = options.stdout ?? ((text: string) => void process.stdout.write(text));
  const stderr = options.stderr ?? ((text: string) => void process.stderr.write(text));
  let program = "elock";
  let run: RunCommand;
  let signals: readonly string[] = STOP_SIGNALS;
  try {
    const [name, ...rest] = args;
    if (name === undefined) throw new UsageError("missing command");
    if (name === "--help" || name === "-h") {
      stdout(usage());
      return 0;
    }
    if (name === "--version" || name === "-V") {
      if (rest[0] !== undefined) throw new UsageError(`unexpected argument ${quote(rest[0])}`);
      stdout(`elock ${VERSION}\n`);
      return 0;
    }
    if (name.startsWith("-")) throw new UsageError(`unknown option ${quote(name)}`);
    const command = findCommand(name);
    program = `elock ${command.name}`;
    const parsed = command.parse(rest);
    if (parsed === "help") {
      stdout(command.help);
      return 0;
    }
    run = parsed;
    signals = command.signals ?? STOP_SIGNALS;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    stderr(`${program}: ${error.message}; run "${program} --help" for usage\n`);
    return 2;
  }
  const stop = options.signal === undefined ? stopOnSignals(signals) : fromAbort(options.signal);
  try {
    const stderrIsTerminal = options.stderrIsTerminal ?? process.stderr.isTTY === true;
    return await run({
      stdout,
      stderr,
      signal: stop.signal,
      onSignal: stop.onSignal,
      stderrIsTerminal,
    });
  } catch (error) {
    stderr(`${program}: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    stop.release();
  }
}

/** What stops a running command: {@linkcode CliIo.signal} and {@linkcode CliIo.onSignal}. */
interface Stop {
  signal: AbortSignal;
  onSignal(listener: (signal: string) => void): () => void;
  release(): void;
}

/**
 * Watches the process signals `names`: each one aborts the signal (with its
 * name; the first one counts) and is passed to the `onSignal` listeners.
 * While watched, none of them ends the process.
 */
function stopOnSignals(names: readonly string[]): Stop {
  const controller = new AbortController();
  const listeners = new Set<(signal: string) => void>();
  const handlers = names.map((name) =>
    [name, () => {
      controller.abort(name);
      for (const listener of [...listeners]) listener(name);
    }] as const
  );
  for (const [name, handler] of handlers) {
    try {
      process.on(name, handler);
    } catch {
      // Not every signal can be watched everywhere (SIGTERM on Windows).
    }
  }
  return {
    signal: controller.signal,
    onSignal(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    release: () => {
      for (const [name, handler] of handlers) process.off(name, handler);
    },
  };
}

/** A caller's AbortSignal: its abort is the one signal (named by the reason, else SIGTERM). */
function fromAbort(signal: AbortSignal): Stop {
  return {
    signal,
    onSignal(listener) {
      const onAbort = () => listener(typeof signal.reason === "string" ? signal.reason : "SIGTERM");
      signal.addEventListener("abort", onAbort, { once: true });
      return () => signal.removeEventListener("abort", onAbort);
    },
    release() {},
  };
}

/**
 * Whether the module with `meta` is the program being run (not imported).
 * Deno, Bun and newer Node set `import.meta.main`; elsewhere compare the
 * script path, following symlinks such as an npm bin link.
 */
function isMainModule(meta: ImportMeta): boolean {
  const flag = (meta as { main?: unknown }).main;
  if (typeof flag === "boolean") return flag;
  const script = process.argv[1];
  if (script === undefined || !meta.url.startsWith("file:")) return false;
  const self = realpathSync(fileURLToPath(meta.url));
  for (const candidate of [script, `${script}.js`]) {
    try {
      if (realpathSync(candidate) === self) return true;
    } catch {
      // Not a file: try the next spelling.
    }
  }
  return false;
}

if (isMainModule(import.meta)) {
  main(process.argv.slice(2)).then((code) => process.exitCode = code);
}
