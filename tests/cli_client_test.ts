/**
 * Tests of the operator commands of the `elock` command line (`stats`,
 * `debug`, `lock`), run as real child processes of the current runtime
 * against the real bundled server. The package pass runs them against the
 * installed package's `elock` bin.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { ELockClient } from "../mod.ts";
import { type Dialect, type ServerEvent, startServer } from "../src/server/mod.ts";
import { Cli, runCli, SLOW, WAIT_MS } from "./support/cli_process.ts";
import { startProxy } from "./support/proxy.ts";
import { until } from "./support/wait.ts";
import { sessionName } from "../mod.ts";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";

/** A server for one test, with the `wait` events it reported. */
async function serve(dialect: Dialect = "extended") {
  const events: ServerEvent[] = [];
  const server = await startServer({ port: 0, dialect, onEvent: (e) => events.push(e) });
  return {
    server,
    port: String(server.port),
    /** Resolves once `count` requests for `key` have waited on the server. */
    waits: (key: string, count = 1) =>
      until(
        () => events.filter((e) => e.type === "wait" && e.key === key).length >= count,
        `${count} wait(s) for ${key}`,
        WAIT_MS,
      ),
    [Symbol.asyncDispose]: () => server.close(),
  };
}

/** A port nothing listens on. */
async function closedPort(): Promise<string> {
  const server = await startServer({ port: 0 });
  await server.close();
  return String(server.port);
}

for (const command of ["stats", "debug", "lock"]) {
  test(`elock ${command} --help prints its usage and exits 0`, SLOW, async () => {
    const { code, stdout, stderr } = await runCli([command, "--help"]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, new RegExp(`^Usage: elock ${command}`));
    assert.match(stdout, /--host HOST/);
    assert.match(stdout, /\$ELOCK_PORT/);
    assert.equal(stderr, "");
  });
}

test(
  "elock --version prints the package version (the source tree's, or the npm bin's)",
  SLOW,
  async () => {
    const root = process.env.ELOCK_REPO_ROOT ?? process.cwd();
    const { version } = JSON.parse(await readFile(join(root, "deno.json"), "utf8"));
    const { code, stdout, stderr } = await runCli(["--version"]);
    assert.equal(code, 0, stderr);
    assert.equal(stdout, `elock ${version}\n`);
  },
);

test("elock --help lists stats, debug and lock", SLOW, async () => {
  const { code, stdout } = await runCli(["--help"]);
  assert.equal(code, 0);
  for (const name of ["stats", "debug", "lock"]) {
    assert.match(stdout, new RegExp(`^ {2}${name} `, "m"));
  }
});

test("elock lock --help documents the exit codes", SLOW, async () => {
  const { stdout } = await runCli(["lock", "--help"]);
  assert.match(stdout, /^ {2}75 +the lock was not obtained within --timeout/m);
  assert.match(stdout, /^ {2}2 +wrong usage, or --shared on an original server/m);
  assert.match(stdout, /^ {2}69 +the server could not be reached/m);
  assert.match(stdout, /^ {2}126, 127 +COMMAND could not be run/m);
});

const BAD_USAGE: Array<[string[], RegExp, Record<string, string>?]> = [
  [["stats", "extra"], /^elock stats: unexpected argument "extra"/],
  [
    ["stats", "--port", "0"],
    /^elock stats: --port "0" is out of range \(expected a whole number 1-65535\)/,
  ],
  [["stats", "--port"], /^elock stats: option --port needs a value/],
  [["stats", "--host="], /^elock stats: --host is empty/],
  [["stats"], /^elock stats: invalid ELOCK_PORT "http" /, { ELOCK_PORT: "http" }],
  [["debug"], /^elock debug: ELOCK_HOST is empty/, { ELOCK_HOST: "" }],
  [["debug", "--json", "--dot"], /^elock debug: --json and --dot exclude each other/],
  [["debug", "--table"], /^elock debug: unknown option "--table"/],
  [["lock"], /^elock lock: missing KEY/],
  [["lock", "k"], /^elock lock: missing -- COMMAND/],
  [["lock", "k", "--"], /^elock lock: missing -- COMMAND/],
  [["lock", "k", "echo", "hi"], /^elock lock: unexpected argument "echo" \(put -- before/],
  [["lock", "k", "--timeout", "soon", "--", "true"], /^elock lock: invalid --timeout "soon"/],
  [["lock", "k", "--timeout", "-1", "--", "true"], /^elock lock: --timeout "-1" is out of range/],
  [["lock", "k", "--shared=yes", "--", "true"], /^elock lock: option --shared takes no value/],
];

for (const [args, message, env] of BAD_USAGE) {
  const where = env === undefined ? "" : ` with ${JSON.stringify(env)}`;
  test(`elock ${args.join(" ")}${where} exits 2 with a usage error`, SLOW, async () => {
    const { code, stdout, stderr } = await runCli(args, env === undefined ? {} : { env });
    assert.equal(code, 2, stderr);
    assert.equal(stdout, "");
    assert.match(stderr, message);
    assert.match(stderr, /--help" for usage\n$/);
  });
}

test("elock stats prints the counters, as text or JSON", SLOW, async () => {
  await using s = await serve();
  await using holder = await ELockClient.connect({ port: s.server.port });
  assert.equal(await holder.lock("a"), true);
  assert.equal(await holder.lock("b"), true);
  const text = await runCli(["stats", "--port", s.port]);
  assert.equal(text.code, 0, text.stderr);
  // Two sessions: the holder's and the command's own.
  assert.equal(text.stdout, "clients     2\nlocks       2\nmonitoring  2\n");
  const json = await runCli(["stats", "--json", "--port", s.port]);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), { clients: 2, locks: 2, monitoring: 2 });
});

test(
  "ELOCK_HOST and ELOCK_PORT pick the server; --host and --port win over them",
  SLOW,
  async () => {
    await using s = await serve();
    const fromEnv = await runCli(["stats", "--json"], {
      env: { ELOCK_HOST: "127.0.0.1", ELOCK_PORT: s.port },
    });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.deepEqual(JSON.parse(fromEnv.stdout), { clients: 1, locks: 0, monitoring: 1 });
    const flags = await runCli(["stats", "--json", "--host", "127.0.0.1", "--port", s.port], {
      env: { ELOCK_HOST: "no-such-host.invalid", ELOCK_PORT: await closedPort() },
    });
    assert.equal(flags.code, 0, flags.stderr);
    assert.equal(JSON.parse(flags.stdout).clients, 1);
  },
);

test(
  "--host a:PORT,b:PORT and ELOCK_HOSTS: the first server that answers is used",
  SLOW,
  async () => {
    await using s = await serve();
    const down = await closedPort();
    const flags = await runCli([
      "stats",
      "--json",
      "--host",
      `127.0.0.1:${down},127.0.0.1:${s.port}`,
    ]);
    assert.equal(flags.code, 0, flags.stderr);
    assert.equal(JSON.parse(flags.stdout).clients, 1);
    const fromEnv = await runCli(["stats", "--json"], {
      env: { ELOCK_HOSTS: `127.0.0.1:${down},127.0.0.1:${s.port}`, ELOCK_HOST: "no.invalid" },
    });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.equal(JSON.parse(fromEnv.stdout).clients, 1);
    const bad = await runCli(["stats", "--host", `127.0.0.1:${s.port},127.0.0.1:99999`]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /invalid --host/);
    const none = await runCli(["stats", "--host", `127.0.0.1:${down},127.0.0.1:${down}`]);
    assert.equal(none.code, 1, none.stderr);
    assert.match(none.stderr, /Cannot connect to 127\.0\.0\.1:\d+: .*; 127\.0\.0\.1:/);
  },
);

test("elock stats and debug exit 1 when no server listens", SLOW, async () => {
  const port = await closedPort();
  for (const command of ["stats", "debug"]) {
    const { code, stdout, stderr } = await runCli([command, "--port", port]);
    assert.equal(code, 1, stderr);
    assert.equal(stdout, "");
    assert.match(
      stderr,
      new RegExp(`^elock ${command}: Cannot connect to 127\\.0\\.0\\.1:${port}`),
    );
  }
});

/** Two sessions: `holder` holds `ledger` and the value lock `schema`, `waiter` waits for `ledger`. */
async function busyServer() {
  const s = await serve();
  const holder = await ELockClient.connect({ port: s.server.port, name: "holder" });
  const waiter = await ELockClient.connect({ port: s.server.port });
  assert.equal(await holder.lock("ledger"), true);
  assert.equal(await holder.lockValue("schema", "read"), true);
  // Asked first: a waiting lock holds back the calls made after it.
  // What the server prints for them: their public names.
  const holderId = sessionName(await holder.sessionId());
  const waiterId = sessionName(await waiter.sessionId());
  const wait = waiter.lock("ledger", { timeout: 4 * WAIT_MS });
  await s.waits("ledger");
  return {
    ...s,
    holderId,
    waiterId,
    async [Symbol.asyncDispose]() {
      await holder.unlockAll();
      assert.equal(await wait, true, "the waiter got the lock once the holder let go");
      await waiter.close();
      await holder.close();
      await s.server.close();
    },
  };
}

test("elock debug prints sessions, locks and waiters as tables", SLOW, async () => {
  await using s = await busyServer();
  const { code, stdout, stderr } = await runCli(["debug", "--port", s.port]);
  assert.equal(code, 0, stderr);
  const sections = stdout.split("\n\n");
  assert.equal(sections.length, 3, stdout);
  const [sessions, locks, waiters] = sections.map((section) => section.split("\n"));
  assert.equal(sessions![0], "SESSIONS (3)");
  assert.match(sessions![1]!, /^ {2}ID +NAME +PEER +CONNECTED +RELEASE TIMEOUT +EXPIRES IN$/);
  const peer = "127\\.0\\.0\\.1:\\d+";
  assert.ok(
    sessions!.some((l) =>
      new RegExp(`^  ${s.holderId} +holder +${peer} +yes +30000 ms +-$`).test(l)
    ),
    stdout,
  );
  assert.ok(
    sessions!.some((l) => new RegExp(`^  ${s.waiterId} +- +${peer} +yes +30000 ms +-$`).test(l)),
    stdout,
  );
  assert.ok(
    sessions!.some((l) =>
      new RegExp(`^  \\S+ \\(elock debug\\) +- +${peer} +yes +0 ms +-$`).test(l)
    ),
    stdout,
  );
  assert.equal(locks![0], "LOCKS (2)");
  assert.match(locks![1]!, /^ {2}KEY +HOLDERS +VALUE$/);
  assert.ok(locks!.some((l) => new RegExp(`^  ledger +#${s.holderId} +\\(exclusive\\)$`).test(l)));
  assert.ok(locks!.some((l) => new RegExp(`^  schema +#${s.holderId} +read$`).test(l)));
  assert.equal(waiters![0], "WAITERS (1)");
  assert.match(waiters![1]!, /^ {2}SESSION +WAITS FOR +HELD BY$/);
  assert.match(waiters![2]!, new RegExp(`^  #${s.waiterId} +ledger +#${s.holderId}$`));
  assert.equal(waiters![3], "");
});

test("elock debug --json prints the parsed debug reply", SLOW, async () => {
  await using s = await busyServer();
  const { code, stdout, stderr } = await runCli(["debug", "--json", "--port", s.port]);
  assert.equal(code, 0, stderr);
  const info = JSON.parse(stdout);
  assert.equal(info.sessions.length, 3);
  // The same names as the table's NAME and PEER columns.
  const holder = info.sessions.find((x: { name?: string }) => x.name === "holder");
  assert.ok(holder !== undefined, stdout);
  assert.match(holder.peer, /^127\.0\.0\.1:\d+$/);
  const locks = [...info.locks].sort((a, b) => a.key.localeCompare(b.key));
  assert.deepEqual(locks, [
    { key: "ledger", holders: [s.holderId], value: null },
    { key: "schema", holders: [s.holderId], value: "read" },
  ]);
  assert.deepEqual(info.requests, [{ session: s.waiterId, key: "ledger" }]);
});

test("elock debug --dot prints the wait-for graph in Graphviz DOT", SLOW, async () => {
  await using s = await busyServer();
  const { code, stdout, stderr } = await runCli(["debug", "--dot", "--port", s.port]);
  assert.equal(code, 0, stderr);
  const lines = stdout.trimEnd().split("\n");
  assert.equal(lines[0], 'digraph "elock wait-for" {');
  assert.equal(lines.at(-1), "}");
  assert.ok(
    lines.includes(`  "${s.holderId}" [label="#${s.holderId}\\nholds ledger, schema (read)"];`),
    stdout,
  );
  assert.ok(lines.includes(`  "${s.waiterId}" [label="#${s.waiterId}"];`), stdout);
  const edges = lines.filter((l) => l.includes("->"));
  assert.deepEqual(edges, [`  "${s.waiterId}" -> "${s.holderId}" [label="ledger"];`]);
});

test("elock debug on an original server exits 1 and says it has no debug", SLOW, async () => {
  await using s = await serve("original");
  const { code, stdout, stderr } = await runCli(["debug", "--port", s.port]);
  assert.equal(code, 1);
  assert.equal(stdout, "");
  assert.match(
    stderr,
    /^elock debug: the server at 127\.0\.0\.1:\d+ has no debug command \(an original eLock server\)/,
  );
});

for (const dialect of ["original", "extended"] as const) {
  test(
    `[${dialect}] elock lock holds the lock while the command runs, exits with its code`,
    SLOW,
    async () => {
      await using s = await serve(dialect);
      await using other = await ELockClient.connect({ port: s.server.port });
      const cli = new Cli(
        ["lock", "job", "--port", s.port, "--", "sh", "-c", "echo started; read line; exit 7"],
        { stdin: true },
      );
      try {
        await cli.waitForStdout(/^started$/);
        assert.equal(await other.lock("job"), false, "the command runs under the lock");
        cli.child.stdin!.end("go\n");
        assert.equal(await cli.exit(), 7);
        assert.equal(cli.stderr, "");
        assert.equal(await other.lock("job"), true, "released after the command");
      } finally {
        await cli.dispose();
      }
    },
  );
}

test(
  "elock lock exits 75 without running the command when the lock stays taken",
  SLOW,
  async () => {
    await using s = await serve();
    await using holder = await ELockClient.connect({ port: s.server.port });
    assert.equal(await holder.lock("job"), true);
    for (const timeout of ["0", "300"]) {
      const { code, stdout, stderr } = await runCli(
        ["lock", "job", "--timeout", timeout, "--port", s.port, "--", "echo", "ran"],
      );
      assert.equal(code, 75, stderr);
      assert.equal(stdout, "", "the command did not run");
      assert.equal(
        stderr,
        `elock lock: "job" is held by another session (not obtained within ${timeout} ms)\n`,
      );
    }
    assert.deepEqual(await holder.stats(), { clients: 1, locks: 1, monitoring: 1 });
  },
);

test("elock lock waits for the lock, then runs the command", SLOW, async () => {
  await using s = await serve();
  await using holder = await ELockClient.connect({ port: s.server.port });
  assert.equal(await holder.lock("job"), true);
  const cli = new Cli(["lock", "job", "--port", s.port, "--", "echo", "ran"]);
  try {
    await s.waits("job");
    assert.equal(cli.stdout, "", "not run while the lock is held elsewhere");
    assert.equal(await holder.unlock("job"), true);
    assert.equal(await cli.exit(), 0, cli.stderr);
    assert.equal(cli.stdout, "ran\n");
    assert.equal(await holder.lock("job"), true, "released after the command");
  } finally {
    await cli.dispose();
  }
});

test(
  "elock lock stops the command and exits 74 when the connection drops with the lock",
  SLOW,
  async () => {
    await using s = await serve();
    await using proxy = await startProxy(s.server.port);
    await using other = await ELockClient.connect({ port: s.server.port });
    const cli = new Cli([
      "lock",
      "job",
      "--port",
      String(proxy.port),
      "--",
      "sh",
      "-c",
      "trap 'echo got-term; exit 9' TERM; echo started; while :; do sleep 0.1; done",
    ]);
    try {
      await cli.waitForStdout(/^started$/);
      assert.equal(await other.lock("job"), false, "held by elock lock");
      proxy.cut();
      assert.equal(await cli.exit(), 74, cli.stderr);
      assert.match(cli.stdout, /^got-term$/m, "the command was stopped");
      assert.match(cli.stderr, /lost "job": the connection to the server dropped/);
      await until(async () => await other.lock("job"), "the server released job", WAIT_MS);
    } finally {
      await cli.dispose();
    }
  },
);

test(
  "elock lock --shared shares with shared holders and not with exclusive ones",
  SLOW,
  async () => {
    await using s = await serve();
    await using reader = await ELockClient.connect({ port: s.server.port });
    assert.equal(
      await reader.locks.request("cfg", { mode: "shared" }, async () => {
        const shared = await runCli(
          ["lock", "cfg", "--shared", "--timeout", "0", "--port", s.port, "--", "echo", "shared"],
        );
        assert.equal(shared.code, 0, shared.stderr);
        assert.equal(shared.stdout, "shared\n");
        const exclusive = await runCli(
          ["lock", "cfg", "--timeout", "0", "--port", s.port, "--", "echo", "exclusive"],
        );
        assert.equal(exclusive.code, 75, "an exclusive lock is not granted next to shared holders");
        assert.equal(exclusive.stdout, "");
        assert.match(
          exclusive.stderr,
          /^elock lock: "cfg" is held shared \(the server refused at once: 500 /,
        );
        return "done";
      }),
      "done",
    );
    await using writer = await ELockClient.connect({ port: s.server.port });
    assert.equal(await writer.lockValue("doc", "mine"), true);
    const excluded = await runCli(
      ["lock", "doc", "--shared", "--timeout", "0", "--port", s.port, "--", "echo", "ran"],
    );
    assert.equal(excluded.code, 75, excluded.stderr);
    assert.equal(excluded.stdout, "");
  },
);

test("elock lock --shared on an original server exits 2 and runs nothing", SLOW, async () => {
  await using s = await serve("original");
  const { code, stdout, stderr } = await runCli(
    ["lock", "cfg", "--shared", "--port", s.port, "--", "echo", "ran"],
  );
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.match(
    stderr,
    /^elock lock: --shared needs an extended eLock server; 127\.0\.0\.1:\d+ has no shared locks/,
  );
});

test(
  "elock lock exits 127 or 126 when the command cannot run, and releases the lock",
  SLOW,
  async () => {
    await using s = await serve();
    await using other = await ELockClient.connect({ port: s.server.port });
    const missing = await runCli(["lock", "job", "--port", s.port, "--", "no-such-command-elock"]);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /^elock lock: cannot run "no-such-command-elock": /);
    const notExecutable = await runCli(["lock", "job", "--port", s.port, "--", "/"]);
    assert.equal(notExecutable.code, 126, notExecutable.stderr);
    assert.equal(await other.lock("job"), true, "released");
  },
);

test(
  "elock lock exits 69 when no server listens, and 2 on a key that is not a word",
  SLOW,
  async () => {
    const port = await closedPort();
    const unreachable = await runCli(["lock", "job", "--port", port, "--", "echo", "ran"]);
    assert.equal(unreachable.code, 69);
    assert.equal(unreachable.stdout, "");
    assert.match(
      unreachable.stderr,
      new RegExp(`^elock lock: Cannot connect to 127\\.0\\.0\\.1:${port}`),
    );
    await using s = await serve();
    const badKey = await runCli(["lock", "two words", "--port", s.port, "--", "echo", "ran"]);
    assert.equal(badKey.code, 2);
    assert.equal(badKey.stdout, "");
    assert.match(badKey.stderr, /^elock lock: .*key/i);
  },
);
