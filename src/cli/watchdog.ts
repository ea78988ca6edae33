/**
 * Runs a command under a watchdog that stops it when the process that
 * started it dies, however it dies (SIGKILL included): `elock lock`'s
 * command must not run on once elock, and with it the lock, is gone.
 *
 * The command is started through `/bin/sh` (Linux and macOS alike), which
 * forks the watchdog, a subshell holding a pipe from elock (its fd 3), and
 * then becomes the command (`exec`): same pid, standard streams, process
 * group and terminal as a command spawned directly. The watchdog exists
 * before the command runs, so no moment is left unwatched. When the command
 * has ended, elock writes `done` and the watchdog exits. If the pipe ends
 * without it, elock has died: the watchdog sends the command SIGTERM, and
 * SIGKILL {@linkcode KILL_AFTER_MS} later if it still runs.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import type { Writable } from "node:stream";

/**
 * How long a command that must stop gets after SIGTERM before SIGKILL, in ms
 * (once the lock is gone).
 *
 * @example
 * ```ts
 * setTimeout(() => process.kill(pid, "SIGKILL"), KILL_AFTER_MS);
 * ```
 */
export const KILL_AFTER_MS = 5000;

/**
 * The shell script: forks the watchdog, then becomes the command ("$@").
 * The shell ignores the `ignored` signals while it forks, so that the
 * watchdog ignores them from its first moment, then restores them for the
 * command. In the subshell `$$` is still the pid of the shell, so of the
 * command. `-` would be an option to some shells' `exec`: such a name is
 * given as a path.
 */
function script(ignored: readonly string[]): string {
  const names = [...ignored.map((signal) => signal.replace(/^SIG/, "")), "PIPE"].join(" ");
  return `trap '' ${names}
(
  read line <&3 && exit 0
  echo "elock lock: elock is gone, and the lock with it: stopping the command (pid $$)" >&2
  kill -TERM $$ 2>/dev/null || exit 0
  n=0
  while kill -0 $$ 2>/dev/null; do
    if [ "$n" -ge ${Math.ceil(KILL_AFTER_MS / 100)} ]; then kill -KILL $$ 2>/dev/null; exit 0; fi
    sleep 0.1
    n=$((n + 1))
  done
) &
trap - ${names}
exec 3<&-
exec "$@"
`;
}

/**
 * A command running under a watchdog.
 *
 * @example
 * ```ts
 * const watched = spawnWatched("./report.sh", [], "./report.sh", ["SIGINT", "SIGTERM"]);
 * watched.child.once("exit", () => watched.standDown());
 * ```
 */
export interface Watched {
  /** The command's process (the shell that became it); its pid is the command's. */
  readonly child: ChildProcess;
  /**
   * Tells the watchdog that the command has ended, after its exit: the
   * watchdog exits. Resolves once it was told (or cannot be).
   */
  standDown(): Promise<void>;
}

/**
 * Why `command` cannot be run, looked up as `execvp` does (a name without
 * `/` in each directory of `PATH`), or its path when it can.
 *
 * @example
 * ```ts
 * const found = findCommand("no-such-command"); // { problem: "not found" }
 * ```
 */
export function findCommand(
  command: string,
): { path: string } | { problem: "not found" | "not executable" } {
  const dirs = (process.env.PATH ?? "/bin:/usr/bin").split(":");
  const candidates = command.includes("/") ? [command] : dirs.map((d) => join(d || ".", command));
  let denied = false;
  for (const path of candidates) {
    try {
      if (statSync(path).isDirectory()) {
        denied = true;
        continue;
      }
      accessSync(path, constants.X_OK);
      return { path };
    } catch (error) {
      if ((error as { code?: string }).code === "EACCES") denied = true;
    }
  }
  return { problem: denied ? "not executable" : "not found" };
}

/**
 * Starts `command` with `args` (found at `path`, see {@linkcode findCommand})
 * with inherited standard streams, under a watchdog that ignores the
 * `ignored` signals (those the caller handles: a signal to the whole process
 * group leaves the watchdog watching).
 *
 * @example
 * ```ts
 * const watched = spawnWatched("sleep", ["60"], "/bin/sleep", ["SIGINT", "SIGTERM"]);
 * ```
 */
export function spawnWatched(
  command: string,
  args: readonly string[],
  path: string,
  ignored: readonly string[],
): Watched {
  const child = spawn(
    "/bin/sh",
    ["-c", script(ignored), "elock-lock", command.startsWith("-") ? path : command, ...args],
    { stdio: ["inherit", "inherit", "inherit", "pipe"] },
  );
  const pipe = child.stdio[3] as Writable | null;
  let broken = pipe === null;
  pipe?.on("error", () => broken = true);
  return {
    child,
    standDown: () =>
      new Promise<void>((resolve) => {
        if (broken || pipe === null) return resolve();
        pipe.once("error", () => resolve());
        pipe.end("done\n", () => resolve());
      }),
  };
}
