/**
 * Tests of `elock lock` and signals: every signal it handles is passed on to
 * the command, and the lock is released once the command has ended; killed
 * with SIGKILL, its watchdog stops the command. Real processes of the
 * current runtime (Deno, Bun or Node) against the real bundled server; the
 * package pass runs them against the installed package's `elock` bin.
 */

import assert from "node:assert/strict";
import { constants } from "node:os";
import process from "node:process";
import { test } from "node:test";
import { ELockClient } from "../mod.ts";
import { type ServerEvent, startServer } from "../src/server/mod.ts";
import { Cli, SLOW, WAIT_MS } from "./support/cli_process.ts";
import { startProxy } from "./support/proxy.ts";
import { runProcess } from "./support/run_process.ts";
import { until } from "./support/wait.ts";

/** The signals `elock lock` handles (`elock lock --help`). */
const SIGNALS = [
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGTERM",
  "SIGALRM",
  "SIGUSR1",
  "SIGUSR2",
] as const;

/** 128 + the signal's number on this system (SIGUSR1 is 10 on Linux, 30 on macOS). */
function killedBy(signal: string): number {
  return 128 + (constants.signals as Record<string, number>)[signal]!;
}

/** A server for one test, with the `wait` events it reported. */
async function serve() {
  const events: ServerEvent[] = [];
  const server = await startServer({ port: 0, onEvent: (e) => events.push(e) });
  return {
    port: String(server.port),
    /** Resolves once `count` requests for `key` have waited on the server. */
    waits: (key: string, count: number) =>
      until(
        () => events.filter((e) => e.type === "wait" && e.key === key).length >= count,
        `${count} wait(s) for ${key}`,
        WAIT_MS,
      ),
    /** Whether a fresh client gets `key`, waiting for it up to WAIT_MS. */
    async takes(key: string): Promise<boolean> {
      await using client = await ELockClient.connect({ port: server.port });
      return await client.lock(key, { timeout: WAIT_MS });
    },
    [Symbol.asyncDispose]: () => server.close(),
  };
}

/**
 * Whether process `pid` has ended. A zombie counts as ended: an orphan is
 * reaped by its new parent, and some (a container's init) never reap.
 */
async function ended(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as { code?: string }).code === "ESRCH";
  }
  const { stdout } = await runProcess("ps", ["-o", "stat=", "-p", String(pid)]);
  return stdout.trim() === "" || stdout.trim().startsWith("Z");
}

/** Kills the command if a failed test left it running, so that the test ends. */
async function killLeftover(pid: number | undefined): Promise<void> {
  if (pid !== undefined && !(await ended(pid))) process.kill(pid, "SIGKILL");
}

/** `elock lock KEY --port PORT -- sh -c SCRIPT`. */
function lockSh(port: string, key: string, script: string): Cli {
  return new Cli(["lock", key, "--port", port, "--", "sh", "-c", script]);
}

for (const signal of SIGNALS) {
  const name = signal.slice(3);
  test(`elock lock passes ${signal} on to the command and releases the lock`, SLOW, async () => {
    await using s = await serve();
    await using other = await ELockClient.connect({ port: Number(s.port) });
    const trapping = lockSh(
      s.port,
      "job",
      `trap 'echo got-${name}; exit 9' ${name}; echo started; while :; do sleep 0.1; done`,
    );
    try {
      await trapping.waitForStdout(/^started$/);
      assert.equal(await other.lock("job"), false, "held while the command runs");
      trapping.signal(signal);
      assert.equal(await trapping.exit(), 9, trapping.stderr);
      assert.match(trapping.stdout, new RegExp(`^got-${name}$`, "m"), "the command got it");
      assert.equal(trapping.stderr, "");
      assert.equal(await s.takes("job"), true, "released");
    } finally {
      await trapping.dispose();
    }
    // A command the signal kills: elock exits 128 + the signal's number.
    const killed = lockSh(s.port, "job", "ulimit -c 0; echo started; exec sleep 60");
    try {
      await killed.waitForStdout(/^started$/);
      assert.equal(await other.lock("job"), false, "held while the command runs");
      killed.signal(signal);
      assert.equal(await killed.exit(), killedBy(signal), killed.stderr);
      assert.equal(await s.takes("job"), true, "released");
    } finally {
      await killed.dispose();
    }
  });
}

test(
  "elock lock passes on each signal while the command runs, and holds the lock until it ends",
  SLOW,
  async () => {
    await using s = await serve();
    await using other = await ELockClient.connect({ port: Number(s.port) });
    const cli = lockSh(
      s.port,
      "job",
      "trap 'echo got-USR1' USR1; trap 'echo got-HUP' HUP; trap 'exit 3' TERM; " +
        "echo started; while :; do sleep 0.1; done",
    );
    try {
      await cli.waitForStdout(/^started$/);
      for (const signal of ["SIGUSR1", "SIGHUP"]) {
        cli.signal(signal);
        await cli.waitForStdout(new RegExp(`^got-${signal.slice(3)}$`));
        assert.equal(await other.lock("job"), false, `still held: the command outlived ${signal}`);
      }
      cli.signal("SIGTERM");
      assert.equal(await cli.exit(), 3, cli.stderr);
      assert.equal(await s.takes("job"), true, "released");
    } finally {
      await cli.dispose();
    }
  },
);

test(
  "elock lock stopped by a signal while it waits exits 128+N and runs nothing",
  SLOW,
  async () => {
    await using s = await serve();
    await using holder = await ELockClient.connect({ port: Number(s.port) });
    assert.equal(await holder.lock("job"), true);
    for (const [index, signal] of SIGNALS.entries()) {
      const cli = new Cli(["lock", "job", "--port", s.port, "--", "echo", "ran"]);
      try {
        await s.waits("job", index + 1);
        cli.signal(signal);
        assert.equal(await cli.exit(), killedBy(signal), `${signal}: ${cli.stderr}`);
        assert.equal(cli.stdout, "");
        await until(async () => (await holder.debug()).requests.length === 0, "no waiter", WAIT_MS);
      } finally {
        await cli.dispose();
      }
    }
  },
);

const SIGKILL_CASES: Array<[string, string]> = [
  ["a command that ends on SIGTERM", "echo pid=$$; exec sleep 60"],
  ["a command that ignores SIGTERM", "trap '' TERM; echo pid=$$; while :; do sleep 0.1; done"],
];

for (const [what, script] of SIGKILL_CASES) {
  test(`elock lock killed with SIGKILL: its watchdog stops ${what}`, SLOW, async () => {
    await using s = await serve();
    await using other = await ELockClient.connect({ port: Number(s.port) });
    const cli = lockSh(s.port, "job", script);
    let pid: number | undefined;
    try {
      pid = Number((await cli.waitForStdout(/^pid=(\d+)$/))[1]);
      assert.equal(await other.lock("job"), false, "held while the command runs");
      process.kill(cli.child.pid!, "SIGKILL");
      await until(() => ended(pid!), `the command (pid ${pid}) to end`, WAIT_MS);
      assert.equal(await s.takes("job"), true, "the server released the lock with the connection");
      assert.equal(await cli.exit(), "SIGKILL");
      assert.match(
        cli.stderr,
        new RegExp(
          `^elock lock: elock is gone, and the lock with it: stopping the command \\(pid ${pid}\\)$`,
          "m",
        ),
      );
    } finally {
      await killLeftover(pid);
      await cli.dispose();
    }
  });
}

test(
  "a signal to the whole process group leaves the watchdog watching",
  SLOW,
  async () => {
    await using s = await serve();
    await using other = await ELockClient.connect({ port: Number(s.port) });
    // Its own process group, as a shell with job control starts it: the
    // group is elock, the command and the watchdog.
    const cli = new Cli(
      [
        "lock",
        "job",
        "--port",
        s.port,
        "--",
        "sh",
        "-c",
        "trap 'echo got-USR1' USR1; echo pid=$$; while :; do sleep 0.1; done",
      ],
      { detached: true },
    );
    let pid: number | undefined;
    try {
      pid = Number((await cli.waitForStdout(/^pid=(\d+)$/))[1]);
      process.kill(-cli.child.pid!, "SIGUSR1");
      await cli.waitForStdout(/^got-USR1$/);
      assert.equal(await other.lock("job"), false, "the command outlived SIGUSR1: still held");
      process.kill(cli.child.pid!, "SIGKILL");
      await until(() => ended(pid!), `the command (pid ${pid}) to end`, WAIT_MS);
      assert.equal(await cli.exit(), "SIGKILL");
      assert.match(cli.stderr, /^elock lock: elock is gone, /m, "the watchdog stopped it");
      assert.equal(await s.takes("job"), true);
    } finally {
      await killLeftover(pid);
      await cli.dispose();
    }
  },
);

test(
  "elock lock whose connection drops SIGKILLs a command that outlives SIGTERM, and exits 74",
  SLOW,
  async () => {
    await using s = await serve();
    await using proxy = await startProxy(Number(s.port));
    const cli = lockSh(
      String(proxy.port),
      "job",
      "trap 'echo got-TERM' TERM; echo pid=$$; while :; do sleep 0.1; done",
    );
    let pid: number | undefined;
    try {
      pid = Number((await cli.waitForStdout(/^pid=(\d+)$/))[1]);
      proxy.cut();
      assert.equal(await cli.exit(), 74, cli.stderr);
      assert.match(cli.stdout, /^got-TERM$/m, "the command was sent SIGTERM first");
      assert.ok(await ended(pid), "then SIGKILL");
      assert.match(cli.stderr, /lost "job": the connection to the server dropped/);
      assert.equal(await s.takes("job"), true);
    } finally {
      await killLeftover(pid);
      await cli.dispose();
    }
  },
);
