/**
 * `elock lock KEY -- COMMAND ARGS...`: runs a command while holding an eLock
 * lock, like `flock` does with a file.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:os";
import process from "node:process";
import { InvalidKeyError, UnexpectedResponseError, UnsupportedCommandError } from "../errors.ts";
import { SHARED_VALUE } from "../client/lock_manager.ts";
import { parseFlags, quote, wholeNumberFlag } from "./flags.ts";
import {
  ADDRESS_FLAGS,
  ADDRESS_HELP,
  connectTo,
  explainError,
  type ServerAddress,
  serverAddress,
} from "./server_address.ts";
import { type CliIo, type Subcommand, UsageError } from "./subcommand.ts";
import { findCommand, KILL_AFTER_MS, spawnWatched, type Watched } from "./watchdog.ts";

/**
 * The exit codes of `elock lock` that are not the command's own.
 *
 * @example
 * ```ts
 * if (code === LOCK_EXIT_CODES.notObtained) console.log("someone else holds it");
 * ```
 */
export const LOCK_EXIT_CODES = {
  /** Wrong usage, or `--shared` on an original server: the command did not run. */
  usage: 2,
  /**
   * The lock was not obtained within `--timeout`, or is held the other way
   * (shared or exclusive) on an extended server (EX_TEMPFAIL): the command did
   * not run.
   */
  notObtained: 75,
  /** The server could not be reached, or failed, before the command ran (EX_UNAVAILABLE). */
  unavailable: 69,
  /**
   * The connection to the server dropped while the command ran, so the lock
   * was gone (the server released it): the command was sent SIGTERM, and
   * SIGKILL if it still ran 5 s later (EX_IOERR).
   */
  lost: 74,
  /** The command could not be run: not executable. */
  cannotExecute: 126,
  /** The command could not be run: not found. */
  notFound: 127,
} as const;

/**
 * The signals that stop `elock lock`: those a terminal, a shell or `kill`
 * sends that would end it otherwise. While the command runs, each is passed
 * on to it; SIGPIPE is left alone (every runtime ignores it, so it does not
 * end elock), as are the stop signals (SIGTSTP and the like pause elock,
 * holding the lock).
 *
 * @example
 * ```ts
 * for (const signal of LOCK_SIGNALS) process.kill(elockPid, signal); // each stops it
 * ```
 */
export const LOCK_SIGNALS: readonly string[] = [
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGTERM",
  "SIGALRM",
  "SIGUSR1",
  "SIGUSR2",
];

const KILL_AFTER_S = KILL_AFTER_MS / 1000;

const HELP = `Usage: elock lock KEY [options] -- COMMAND [ARGS...]

Takes the eLock lock KEY, runs COMMAND with ARGS while holding it, and
releases it when COMMAND ends, like flock(1). Standard input, output and error
are COMMAND's. When standard error is a terminal and KEY is held by another
session, it says once that it is waiting for KEY.

SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGALRM, SIGUSR1 and SIGUSR2 are passed on
to COMMAND, each time one comes; the lock is held until COMMAND has ended,
then released. A signal sent to the whole process group (Ctrl-C, a closed
terminal) reaches COMMAND directly too, so COMMAND may get it twice.
If the connection drops, the lock is gone: COMMAND gets SIGTERM, and SIGKILL
${KILL_AFTER_S} s later. If elock dies (SIGKILL, a crash), its connection closes and the
server releases the lock at once (the session has no release timeout); a
watchdog, which /bin/sh forks before it becomes COMMAND, sees elock's pipe end
and sends COMMAND SIGTERM, and SIGKILL ${KILL_AFTER_S} s later. Signals reach COMMAND's
process only, not processes it started.

Options:
  --timeout MS           wait at most MS milliseconds for the lock; 0 tries
                         once (default: wait until it is granted)
  --shared               take a shared lock: holders of --shared share it, an
                         exclusive holder excludes them (the value lock
                         "${SHARED_VALUE}" of an extended server: the same as
                         client.locks.request(KEY, { mode: "shared" }));
                         an original server has no shared locks: exit 2.
                         Without it the lock is the plain exclusive one of
                         client.lock(KEY). An extended server holds a key
                         either exclusively or shared: asking for it the
                         other way is refused at once (exit ${LOCK_EXIT_CODES.notObtained})
  --sha1                 lock the SHA-1 (hex) of KEY, not KEY itself, as the PHP
                         client and keyEncoding "sha1" do: KEY may then be any
                         text, and PHP services lock the same resource
${ADDRESS_HELP}
  -h, --help             show this help

Exit codes:
  COMMAND's own          COMMAND ran (128+N when it was killed by signal N)
  ${LOCK_EXIT_CODES.notObtained}                     the lock was not obtained within --timeout (or is
                         held the other way); COMMAND did not run
  ${LOCK_EXIT_CODES.unavailable}                     the server could not be reached or failed; COMMAND did not run
  ${LOCK_EXIT_CODES.lost}                     the connection dropped while COMMAND ran, so the lock was
                         released: COMMAND was sent SIGTERM (SIGKILL ${KILL_AFTER_S} s later)
  ${LOCK_EXIT_CODES.cannotExecute}, ${LOCK_EXIT_CODES.notFound}               COMMAND could not be run: not executable, not found
  2                      wrong usage, or --shared on an original server
  128+N                  signal N came while waiting for the lock (129 SIGHUP,
                         130 SIGINT, 143 SIGTERM); COMMAND did not run
`;

const FLAGS = {
  ...ADDRESS_FLAGS,
  timeout: { type: "string" },
  shared: { type: "boolean" },
  sha1: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** What `elock lock` was asked to do. */
interface LockRequest {
  readonly key: string;
  readonly timeout: number;
  readonly shared: boolean;
  readonly sha1: boolean;
  readonly command: string;
  readonly args: readonly string[];
}

/** The `lock` entry of the CLI's table of subcommands. */
export const lockCommand: Subcommand = {
  name: "lock",
  summary: "run a command while holding a lock (like flock)",
  help: HELP,
  signals: LOCK_SIGNALS,
  parse(args) {
    const split = args.indexOf("--");
    const own = split === -1 ? args : args.slice(0, split);
    const { values, positionals } = parseFlags(own, FLAGS);
    if (values.help) return "help";
    const [key, extra] = positionals;
    if (key === undefined) throw new UsageError("missing KEY");
    if (extra !== undefined) {
      throw new UsageError(`unexpected argument ${quote(extra)} (put -- before the command)`);
    }
    const [command, ...commandArgs] = split === -1 ? [] : args.slice(split + 1);
    if (command === undefined) throw new UsageError("missing -- COMMAND");
    let timeout = Infinity;
    if (values.timeout !== undefined) {
      timeout = wholeNumberFlag(
        "--timeout",
        values.timeout,
        0,
        Number.MAX_SAFE_INTEGER,
        "a whole number of ms, 0 or more",
      );
    }
    const address = serverAddress(values);
    const request = {
      key,
      timeout,
      shared: values.shared ?? false,
      sha1: values.sha1 ?? false,
      command,
      args: commandArgs,
    };
    return (io) => runLocked(request, address, io);
  },
};

/** The exit code of a process killed by `signal`: 128 + its number. */
function signalExitCode(signal: string): number {
  const number = (constants.signals as Record<string, number | undefined>)[signal];
  return 128 + (number ?? 0);
}

async function runLocked(
  request: LockRequest,
  address: ServerAddress,
  io: CliIo,
): Promise<number> {
  const say = (text: string) => io.stderr(`elock lock: ${text}\n`);
  const stopped = () =>
    typeof io.signal.reason === "string" ? signalExitCode(io.signal.reason) : 130;
  let client;
  let granted: boolean;
  try {
    client = await connectTo(address, io.signal, request.sha1 ? { keyEncoding: "sha1" } : {});
  } catch (error) {
    if (io.signal.aborted) return stopped();
    say(error instanceof Error ? error.message : String(error));
    return LOCK_EXIT_CODES.unavailable;
  }
  try {
    const take = (timeout: number) => {
      const options = { timeout, signal: io.signal };
      return request.shared
        ? client!.lockValue(request.key, SHARED_VALUE, options)
        : client!.lock(request.key, options);
    };
    if (io.stderrIsTerminal === true && request.timeout > 0) {
      // A person watches: try at once, and say so when the key is held and the wait begins.
      const started = Date.now();
      granted = await take(0);
      if (!granted) {
        const within = request.timeout === Infinity ? "" : ` (at most ${request.timeout} ms)`;
        say(`waiting for ${quote(request.key)}, held by another session${within}...`);
        granted = await take(Math.max(0, request.timeout - (Date.now() - started)));
      }
    } else granted = await take(request.timeout);
  } catch (error) {
    await client.close();
    if (io.signal.aborted) return stopped();
    if (error instanceof UnsupportedCommandError) {
      say(
        `--shared needs an extended eLock server; ${address.host}:${address.port} ` +
          `has no shared locks (${error.command}: ${error.reply})`,
      );
      return LOCK_EXIT_CODES.usage;
    }
    if (error instanceof UnexpectedResponseError && error.reply.startsWith("500")) {
      // Extended servers: a key is locked exclusively or with values, never both.
      say(
        `${quote(request.key)} is held ${request.shared ? "exclusively" : "shared"} ` +
          `(the server refused at once: ${error.reply})`,
      );
      return LOCK_EXIT_CODES.notObtained;
    }
    const shown = explainError(error, address);
    say(shown instanceof Error ? shown.message : String(shown));
    return error instanceof InvalidKeyError ? LOCK_EXIT_CODES.usage : LOCK_EXIT_CODES.unavailable;
  }
  if (!granted) {
    await client.close();
    say(
      `${
        quote(request.key)
      } is held by another session (not obtained within ${request.timeout} ms)`,
    );
    return LOCK_EXIT_CODES.notObtained;
  }
  // The command must not run on unprotected: when the lock is lost with the
  // connection it is stopped.
  const lostLock = new AbortController();
  let lost = false;
  client.addEventListener("sessionlost", () => {
    lost = true;
    say(`lost ${quote(request.key)}: the connection to the server dropped; stopping the command`);
    lostLock.abort();
  });
  let code: number;
  try {
    code = io.signal.aborted ? stopped() : await runCommand(request, io, lostLock.signal, say);
  } finally {
    if (!lost) {
      try {
        await client.unlock(request.key);
      } catch (error) {
        say(`releasing ${quote(request.key)} failed: ${(error as Error).message}`);
      }
    }
    await client.close();
  }
  return lost ? LOCK_EXIT_CODES.lost : code;
}

/**
 * Runs the command with inherited standard streams, under a watchdog (none on
 * Windows, which has no `/bin/sh` and no SIGKILL to fear). Passes on every
 * signal elock handles while it runs; once the lock is lost (`lostLock`
 * aborts), sends it SIGTERM, and SIGKILL {@linkcode KILL_AFTER_MS} later.
 * Resolves to its exit code once it has ended and the watchdog knows.
 */
async function runCommand(
  request: LockRequest,
  io: CliIo,
  lostLock: AbortSignal,
  say: (text: string) => void,
): Promise<number> {
  let child: ChildProcess;
  let watched: Watched | undefined;
  if (process.platform === "win32") {
    child = spawn(request.command, [...request.args], { stdio: "inherit" });
  } else {
    const found = findCommand(request.command);
    if ("problem" in found) {
      say(`cannot run ${quote(request.command)}: ${found.problem}`);
      return found.problem === "not found"
        ? LOCK_EXIT_CODES.notFound
        : LOCK_EXIT_CODES.cannotExecute;
    }
    watched = spawnWatched(request.command, request.args, found.path, LOCK_SIGNALS);
    child = watched.child;
  }
  const code = await new Promise<number>((resolve) => {
    const pid = child.pid;
    let ended = false;
    const send = (signal: string) => {
      if (pid === undefined || ended) return;
      try {
        // process.kill, not child.kill: Deno's child.kill reports the signal
        // as the way the child ended even when the child caught it and exited.
        process.kill(pid, signal);
      } catch {
        // It has just ended.
      }
    };
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    const stopUnprotected = () => {
      send("SIGTERM");
      killTimer = setTimeout(() => send("SIGKILL"), KILL_AFTER_MS);
    };
    const unsubscribe = io.onSignal(send);
    lostLock.addEventListener("abort", stopUnprotected, { once: true });
    const done = (code: number) => {
      if (ended) return;
      ended = true;
      unsubscribe();
      lostLock.removeEventListener("abort", stopUnprotected);
      clearTimeout(killTimer);
      resolve(code);
    };
    child.once("error", (error: Error & { code?: string }) => {
      say(`cannot run ${quote(request.command)}: ${error.message}`);
      done(error.code === "ENOENT" ? LOCK_EXIT_CODES.notFound : LOCK_EXIT_CODES.cannotExecute);
    });
    child.once("exit", (code, killedBy) => {
      done(code ?? signalExitCode(killedBy ?? "SIGKILL"));
    });
  });
  await watched?.standDown();
  return code;
}
