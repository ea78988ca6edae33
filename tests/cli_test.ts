/**
 * Tests of the `elock` command line, run as a real child process of the
 * current runtime (Deno, Bun or Node).
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import process from "node:process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ELockClient } from "../mod.ts";
import { main } from "../src/cli.ts";
import { formatEvent, parseServerArgs } from "../src/cli/server_command.ts";
import { type ServerEvent, startServer } from "../src/server/mod.ts";
import { startScriptedServer } from "./support/proxy.ts";
import { until } from "./support/wait.ts";
import { sessionName } from "../mod.ts";
import { Cli, SLOW } from "./support/cli_process.ts";
import { LineClient } from "./support/line_client.ts";
import { makeCertificates } from "./support/tls_cert.ts";

/** Starts `elock server ARGS` and resolves once it listens; returns the process and port. */
async function startCliServer(args: string[]): Promise<{ cli: Cli; port: number }> {
  const cli = new Cli(["server", "--port", "0", ...args]);
  try {
    const match = await cli.waitForStderr(/^elock: (\w+) server listening on 127\.0\.0\.1:(\d+)$/);
    return { cli, port: Number(match[2]) };
  } catch (error) {
    await cli.dispose();
    throw error;
  }
}

async function assertPortClosed(port: number): Promise<void> {
  await assert.rejects(LineClient.connect(port), "the port still accepts connections");
}

for (const args of [["--help"], ["-h"], ["help"]]) {
  test(`elock ${args.join(" ")} prints the usage and exits 0`, SLOW, async () => {
    const cli = new Cli(args);
    try {
      assert.equal(await cli.exit(), 0);
      assert.match(cli.stdout, /^Usage: elock COMMAND/);
      assert.match(cli.stdout, /^ {2}server /m);
      assert.equal(cli.stderr, "");
    } finally {
      await cli.dispose();
    }
  });
}

for (const args of [["server", "--help"], ["help", "server"]]) {
  test(`elock ${args.join(" ")} prints the server usage and exits 0`, SLOW, async () => {
    const cli = new Cli(args);
    try {
      assert.equal(await cli.exit(), 0);
      assert.match(cli.stdout, /^Usage: elock server/);
      assert.match(cli.stdout, /--dialect/);
      assert.equal(cli.stderr, "");
    } finally {
      await cli.dispose();
    }
  });
}

const BAD_USAGE: Array<[string[], RegExp]> = [
  [[], /^elock: missing command; run "elock --help"/],
  [["frob"], /^elock: unknown command "frob"; run "elock --help"/],
  [["--bogus"], /^elock: unknown option "--bogus"; run "elock --help"/],
  [["help", "frob"], /^elock help: unknown command "frob"/],
  [["server", "--bogus"], /^elock server: unknown option "--bogus"; run "elock server --help"/],
  [["server", "-x"], /^elock server: unknown option "-x"/],
  [["server", "--port"], /^elock server: option --port needs a value/],
  [["server", "--port", "--verbose"], /^elock server: option --port needs a value/],
  [["server", "--dialect"], /^elock server: option --dialect needs a value/],
  [["server", "--port", "abc"], /^elock server: invalid --port "abc"/],
  [["server", "--port", "1.5"], /^elock server: invalid --port "1.5"/],
  [["server", "--port", "65536"], /^elock server: --port "65536" is out of range/],
  [["server", "--port=-1"], /^elock server: --port "-1" is out of range/],
  [["server", "--dialect", "modern"], /^elock server: invalid dialect "modern"/],
  [["server", "--max-line-length", "8"], /^elock server: --max-line-length "8" is out of range/],
  [["server", "--verbose=yes"], /^elock server: option --verbose takes no value/],
  [["server", "extra"], /^elock server: unexpected argument "extra"/],
];

for (const [args, message] of BAD_USAGE) {
  test(`elock ${args.join(" ") || "(no arguments)"} exits 2 with a usage error`, SLOW, async () => {
    const cli = new Cli(args);
    try {
      assert.equal(await cli.exit(), 2);
      assert.equal(cli.stdout, "");
      assert.match(cli.stderr, message);
      assert.match(cli.stderr, /--help" for usage\n$/);
      assert.equal(cli.stderr.split("\n").length, 2, "one line on stderr");
    } finally {
      await cli.dispose();
    }
  });
}

test(
  "elock server (original) serves clients, logs connections, and stops on SIGTERM",
  SLOW,
  async () => {
    const { cli, port } = await startCliServer(["--dialect", "original"]);
    try {
      assert.match(cli.stderr, /elock: original server listening on 127\.0\.0\.1:\d+\n/);
      const client = await LineClient.connect(port);
      let id: string | undefined;
      try {
        id = (await client.request("conn_id")).match(/^200 (\S+)\r$/)?.[1];
        assert.ok(id, "conn_id answers 200 ID");
        assert.equal(await client.request("lock a"), "200 Acquired\r");
        await cli.waitForStderr(
          new RegExp(`^elock: #${sessionName(id)} connected from 127\\.0\\.0\\.1`),
        );
        cli.signal("SIGTERM");
        assert.equal(await cli.exit(), 0);
        assert.ok(await client.waitEnd(), "the server closed the client's connection");
      } finally {
        await client.close();
      }
      assert.match(cli.stderr, /^elock: SIGTERM received, stopping$/m);
      assert.match(
        cli.stderr,
        new RegExp(`^elock: #${sessionName(id!)} disconnected .* holding 1 lock$`, "m"),
      );
      assert.doesNotMatch(cli.stderr, /lock a/, "commands are logged only with --verbose");
      await assertPortClosed(port);
    } finally {
      await cli.dispose();
    }
  },
);

test(
  "elock server (extended) logs a disconnect with the locks held, and stops on SIGINT",
  SLOW,
  async () => {
    const { cli, port } = await startCliServer([]);
    try {
      assert.match(cli.stderr, /elock: extended server listening on /);
      const client = await LineClient.connect(port);
      let id: string | undefined;
      try {
        id = (await client.request("conn_id")).match(/^200 (\S+)$/)?.[1];
        assert.ok(id, "conn_id answers 200 ID");
        assert.equal(await client.request("lock a"), "200 Lock acquired");
        assert.equal(await client.request("lock b"), "200 Lock acquired");
      } finally {
        await client.close();
      }
      await cli.waitForStderr(
        new RegExp(`^elock: #${sessionName(id!)} disconnected .* holding 2 locks$`),
      );
      cli.signal("SIGINT");
      assert.equal(await cli.exit(), 0);
      assert.match(cli.stderr, /^elock: SIGINT received, stopping$/m);
      assert.match(cli.stderr, /^elock: stopped$/m);
      await assertPortClosed(port);
    } finally {
      await cli.dispose();
    }
  },
);

test("elock server --verbose logs every command with its reply", SLOW, async () => {
  const { cli, port } = await startCliServer(["--verbose", "--sequential-ids"]);
  try {
    const client = await LineClient.connect(port);
    try {
      assert.equal(await client.request("conn_id"), "200 1");
      assert.equal(await client.request("lock a"), "200 Lock acquired");
      assert.equal(await client.request("bogus"), "500 Internal server error");
    } finally {
      await client.close();
    }
    await cli.waitForStderr(/^elock: #1 disconnected /);
    assert.match(cli.stderr, /^elock: #1 conn_id => 200 1$/m);
    assert.match(cli.stderr, /^elock: #1 lock a => 200 Lock acquired$/m);
    assert.match(cli.stderr, /^elock: #1 bogus => 500 Internal server error$/m);
    cli.signal("SIGTERM");
    assert.equal(await cli.exit(), 0);
  } finally {
    await cli.dispose();
  }
});

test("elock server exits 1 when its port is taken", SLOW, async () => {
  const { cli: first, port } = await startCliServer([]);
  try {
    const second = new Cli(["server", "--port", String(port)]);
    try {
      assert.equal(await second.exit(), 1);
      assert.match(
        second.stderr,
        new RegExp(`^elock: cannot start server on 127\\.0\\.0\\.1:${port}: `),
      );
    } finally {
      await second.dispose();
    }
  } finally {
    await first.dispose();
  }
});

test("main() runs in process: usage errors return 2, help returns 0", SLOW, async () => {
  const out: string[] = [];
  const err: string[] = [];
  const io = { stdout: (t: string) => void out.push(t), stderr: (t: string) => void err.push(t) };
  assert.equal(await main(["server", "--port", "x"], io), 2);
  assert.deepEqual(out, []);
  assert.match(err.join(""), /^elock server: invalid --port "x"/);
  assert.equal(await main(["help", "server"], io), 0);
  assert.match(out.join(""), /^Usage: elock server/);
});

/**
 * `main(["server", "--port", "0", ...args])` in process, once it says it listens: its stderr so
 * far, and `stop()`, which aborts it (reason "test") and resolves to its exit code.
 */
async function serverInProcess(
  args: string[],
): Promise<{ err(): string; stop(): Promise<number> }> {
  let err = "";
  let listening: () => void;
  const started = new Promise<void>((resolve) => listening = resolve);
  const stop = new AbortController();
  const done = main(["server", "--port", "0", ...args], {
    stdout: () => {},
    stderr: (text) => {
      err += text;
      if (text.includes("listening")) listening();
    },
    signal: stop.signal,
  });
  await started;
  return {
    err: () => err,
    stop: () => {
      stop.abort("test");
      return done;
    },
  };
}

test("main() runs the server in process until its signal is aborted", SLOW, async () => {
  const server = await serverInProcess(["--sequential-ids"]);
  const port = Number(server.err().match(/listening on 127\.0\.0\.1:(\d+)/)?.[1]);
  const client = await LineClient.connect(port);
  try {
    assert.equal(await client.request("conn_id"), "200 1");
  } finally {
    await client.close();
  }
  assert.equal(await server.stop(), 0);
  assert.match(server.err(), /^elock: #1 connected from /m);
  assert.match(server.err(), /^elock: test received, stopping\n(.*\n)*elock: stopped\n$/m);
  await assertPortClosed(port);
});

/** Writes a fresh CA-signed certificate and key to a temporary folder; removed on dispose. */
async function certificateFiles() {
  const certs = await makeCertificates();
  const dir = await mkdtemp(join(tmpdir(), "elock-tls-"));
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  await writeFile(cert, certs.cert);
  await writeFile(key, certs.key);
  return {
    cert,
    key,
    dir,
    caCert: certs.caCert,
    [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }),
  };
}

test("elock server --tls-cert --tls-key serves TLS clients only", SLOW, async () => {
  await using files = await certificateFiles();
  const cli = new Cli(["server", "--port", "0", "--tls-cert", files.cert, "--tls-key", files.key]);
  try {
    const match = await cli.waitForStderr(
      /^elock: extended server listening on 127\.0\.0\.1:(\d+) \(TLS\)$/,
    );
    const port = Number(match[1]);
    await using client = await ELockClient.connect({ port, tls: { caCerts: [files.caCert] } });
    assert.equal(await client.lock("a"), true);
    assert.deepEqual(await client.stats(), { clients: 1, locks: 1, monitoring: 1 });
    // A client that does not trust the certificate is turned away.
    await assert.rejects(ELockClient.connect({ port, tls: true }), /Cannot connect to/);
    cli.signal("SIGTERM");
    assert.equal(await cli.exit(), 0);
  } finally {
    await cli.dispose();
  }
});

test(
  "elock server --tls-cert/--tls-key: usage errors for one without the other or a bad file",
  SLOW,
  async () => {
    await using files = await certificateFiles();
    const missing = join(files.dir, "missing.pem");
    const notPem = join(files.dir, "not.pem");
    await writeFile(notPem, "hello");
    const cases: Array<[string[], RegExp]> = [
      [["--tls-cert", files.cert], /^elock server: option --tls-cert needs --tls-key/],
      [["--tls-key", files.key], /^elock server: option --tls-key needs --tls-cert/],
      [
        ["--tls-cert", missing, "--tls-key", files.key],
        /^elock server: cannot read --tls-cert file "[^"]*missing\.pem": /,
      ],
      [
        ["--tls-cert", files.cert, "--tls-key", notPem],
        /^elock server: --tls-key file "[^"]*not\.pem" is not PEM/,
      ],
    ];
    for (const [args, message] of cases) {
      let err = "";
      const io = { stdout: () => {}, stderr: (t: string) => void (err += t) };
      assert.equal(await main(["server", "--port", "0", ...args], io), 2, args.join(" "));
      assert.match(err, message);
    }
  },
);

/** Runs `main(args)` in this process; its exit code and output. */
async function runMain(
  args: string[],
  options: { stderrIsTerminal?: boolean; onStderr?: (all: string) => void } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await main(args, {
    stdout: (t) => void (stdout += t),
    stderr: (t) => {
      stderr += t;
      options.onStderr?.(stderr);
    },
    signal: new AbortController().signal,
    ...(options.stderrIsTerminal === undefined
      ? {}
      : { stderrIsTerminal: options.stderrIsTerminal }),
  });
  return { code, stdout, stderr };
}

test("elock --version and -V print the version of deno.json", async () => {
  const root = process.env.ELOCK_REPO_ROOT ?? process.cwd();
  const { version } = JSON.parse(await readFile(join(root, "deno.json"), "utf8"));
  for (const flag of ["--version", "-V"]) {
    assert.deepEqual(await runMain([flag]), { code: 0, stdout: `elock ${version}\n`, stderr: "" });
  }
  assert.equal((await runMain(["--version", "x"])).code, 2);
  assert.match((await runMain(["--help"])).stdout, /--version/);
});

test("every numeric flag: a negative value is out of range, not a missing value", async () => {
  const cases: Array<[string, string[]]> = [];
  for (
    const flag of [
      "--port",
      "--max-line-length",
      "--max-held-keys",
      "--max-waiters-per-key",
      "--grace",
      "--max-connections",
      "--max-reply-bytes",
      "--idle-timeout",
      "--keepalive",
    ]
  ) cases.push([flag, ["server", flag, "-5"]]);
  for (const command of ["stats", "debug"]) {
    for (const flag of ["--port", "--connect-timeout"]) cases.push([flag, [command, flag, "-5"]]);
  }
  for (const flag of ["--port", "--connect-timeout", "--timeout"]) {
    cases.push([flag, ["lock", "k", flag, "-5", "--", "true"]]);
  }
  for (const flag of ["--port", "--connect-timeout"]) {
    cases.push([flag, ["unlock", "--force", "k", flag, "-5"]]);
  }
  for (const [flag, args] of cases) {
    const { code, stdout, stderr } = await runMain(args);
    assert.equal(code, 2, args.join(" "));
    assert.equal(stdout, "");
    assert.match(
      stderr,
      new RegExp(`^elock ${args[0]}: ${flag} "-5" is out of range \\(expected `),
      args.join(" "),
    );
  }
  const fraction = await runMain(["lock", "k", "--timeout", "-1.5", "--", "true"]);
  assert.match(fraction.stderr, /^elock lock: invalid --timeout "-1\.5"/);
  const flagAsValue = await runMain(["stats", "--port", "--json"]);
  assert.match(flagAsValue.stderr, /^elock stats: option --port needs a value/);
});

/** A TCP server on loopback that accepts connections and never answers. */
async function silentServer() {
  return await startScriptedServer(() => {});
}

test("--connect-timeout: stats, debug and lock fail fast on a port that never answers", async () => {
  await using silent = await silentServer();
  const port = String(silent.port);
  const message = new RegExp(
    `no reply from 127\\.0\\.0\\.1:${port} within 200 ms \\(--connect-timeout 200\\)`,
  );
  for (const [args, exit] of [[["stats"], 1], [["debug"], 1], [["lock", "k"], 69]] as const) {
    const tail = args[0] === "lock" ? ["--", "true"] : [];
    const { code, stdout, stderr } = await runMain(
      [...args, "--port", port, "--connect-timeout", "200", ...tail],
    );
    assert.equal(code, exit, stderr);
    assert.equal(stdout, "");
    assert.match(stderr, message);
  }
});

test("a reply that is not eLock's: the error asks whether HOST:PORT is an eLock server", async () => {
  await using http = await startScriptedServer((_line, write, close) => {
    write("HTTP/1.1 400 Bad Request\r\n\r\n");
    close();
  });
  const port = String(http.port);
  const hint = `is 127\\.0\\.0\\.1:${port} an eLock server\\?`;
  for (const [args, exit] of [[["stats"], 1], [["debug"], 1], [["lock", "k"], 69]] as const) {
    const tail = args[0] === "lock" ? ["--", "true"] : [];
    const { code, stderr } = await runMain([...args, "--port", port, ...tail]);
    assert.equal(code, exit, stderr);
    assert.match(stderr, new RegExp(`^elock ${args[0]}: .*HTTP/1\\.1 400 Bad Request.*${hint}`));
  }
});

test("elock lock on a terminal says once that it waits, and only when it has to", async () => {
  const events: ServerEvent[] = [];
  await using server = await startServer({ port: 0, onEvent: (e) => events.push(e) });
  const port = String(server.port);
  const free = await runMain(["lock", "job", "--port", port, "--", "true"], {
    stderrIsTerminal: true,
  });
  assert.deepEqual(free, { code: 0, stdout: "", stderr: "" }, "got it at once: nothing said");
  await using holder = await ELockClient.connect({ port: server.port });
  assert.equal(await holder.lock("job"), true);
  const notTerminal = runMain(["lock", "job", "--port", port, "--", "true"], {
    stderrIsTerminal: false,
  });
  await until(() => events.some((e) => e.type === "wait"), "a wait", 30_000);
  assert.equal(await holder.unlock("job"), true);
  assert.deepEqual(await notTerminal, { code: 0, stdout: "", stderr: "" }, "not a terminal");
  assert.equal(await holder.lock("job"), true);
  let said: () => void;
  const saidIt = new Promise<void>((resolve) => said = resolve);
  const waiting = runMain(["lock", "job", "--port", port, "--", "true"], {
    stderrIsTerminal: true,
    onStderr: (all) => all.includes("waiting") && said(),
  });
  await saidIt;
  assert.equal(await holder.unlock("job"), true);
  const { code, stderr } = await waiting;
  assert.equal(code, 0, stderr);
  assert.equal(stderr, 'elock lock: waiting for "job", held by another session...\n');
});

test("elock unlock: usage without --force; --force refused without --admin, frees with it", async () => {
  const usage = await runMain(["unlock", "job"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /^elock unlock: unlock needs --force: a lock belongs to the session/);
  assert.equal((await runMain(["unlock", "--force"])).code, 2, "missing KEY");
  await using plain = await startServer({ port: 0 });
  const refused = await runMain(["unlock", "--force", "job", "--port", String(plain.port)]);
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    /^elock unlock: the server at 127\.0\.0\.1:\d+ refused: 403 Forbidden: force_unlock needs a server started with --admin\n$/,
  );
  const events: ServerEvent[] = [];
  await using server = await startServer({ port: 0, admin: true, onEvent: (e) => events.push(e) });
  const port = String(server.port);
  await using holder = await ELockClient.connect({ port: server.port });
  await using waiter = await ELockClient.connect({ port: server.port });
  assert.equal(await holder.lock("job"), true);
  const waits = waiter.lock("job", { timeout: 30_000 });
  await until(() => events.some((e) => e.type === "wait"), "the waiter queued", 30_000);
  const freed = await runMain(["unlock", "--force", "job", "--port", port]);
  assert.equal(freed.code, 0, freed.stderr);
  assert.match(freed.stdout, /^elock unlock: freed "job": Released from #\S+\n$/);
  assert.equal(await waits, true, "the next waiter got it");
  assert.equal(await holder.unlock("job"), false, "the holder learns it at its unlock");
  const logged = events.find((e) => e.type === "force_unlock");
  assert.ok(logged !== undefined && formatEvent(logged).includes("force_unlock job: released it"));
  const again = await runMain(["unlock", "--force", "nothing", "--port", port]);
  assert.deepEqual(again, {
    code: 1,
    stdout: "",
    stderr: 'elock unlock: "nothing" was not locked\n',
  });
});

test("elock lock --sha1 locks the key's SHA-1; elock debug marks and names SHA-1 keys", async () => {
  await using server = await startServer({ port: 0 });
  const port = String(server.port);
  await using php = await ELockClient.connect({ port: server.port, keyEncoding: "sha1" });
  assert.equal(await php.lock("nightly report"), true);
  const taken = await runMain(
    ["lock", "nightly report", "--sha1", "--timeout", "0", "--port", port, "--", "true"],
  );
  assert.equal(taken.code, 75, "the same key as the sha1 client's");
  assert.match(taken.stderr, /"nightly report" is held by another session/);
  const hex = "2f2e9e5ed5d0d9b3bbd1e0ee4bbd2ab8b1e0c1e0"; // some other SHA-1
  await using raw = await ELockClient.connect({ port: server.port });
  assert.equal(await raw.lock(hex), true);
  const table = await runMain(["debug", "--port", port, "--sha1", "nightly report,other"]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^ {2}[0-9a-f]{40} \(sha1 of "nightly report"\) +#/m);
  assert.match(table.stdout, new RegExp(`^  ${hex} \\(sha1\\) +#`, "m"));
  const json = await runMain(["debug", "--json", "--port", port, "--sha1", "nightly report"]);
  const info = JSON.parse(json.stdout);
  assert.deepEqual(
    info.locks.map((l: { sha1Of?: string }) => l.sha1Of ?? null).sort(),
    ["nightly report", null].sort(),
  );
});

test("elock server --admin: the option, the start line, and the force_unlock log lines", async () => {
  const admin = parseServerArgs(["--admin"]);
  assert.ok(admin !== "help" && admin.admin === true);
  const plain = parseServerArgs([]);
  assert.ok(plain !== "help" && plain.admin === undefined);
  const server = await serverInProcess(["--admin"]);
  assert.match(
    server.err(),
    /^elock: extended server listening on 127\.0\.0\.1:\d+ \(admin commands on\)$/m,
  );
  assert.equal(await server.stop(), 0);
  const event = {
    type: "force_unlock",
    session: "op",
    remote: "127.0.0.1:5000",
    key: "job",
    holders: [],
  } as const;
  assert.equal(
    formatEvent({ ...event, outcome: "refused" }),
    "#op (127.0.0.1:5000) force_unlock job: refused (the server runs without --admin)",
  );
  assert.equal(
    formatEvent({ ...event, outcome: "not_locked" }),
    "#op (127.0.0.1:5000) force_unlock job: it was not locked",
  );
  assert.equal(
    formatEvent({ ...event, outcome: "released", holders: ["a", "b"] }),
    "#op (127.0.0.1:5000) force_unlock job: released it from #a, #b",
  );
});
