/**
 * Tests of the `elock` command line, run as a real child process of the
 * current runtime (Deno, Bun or Node).
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ELockClient } from "../mod.ts";
import { main } from "../src/cli.ts";
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
  [["server", "--port", "abc"], /^elock server: invalid port "abc"/],
  [["server", "--port", "1.5"], /^elock server: invalid port "1.5"/],
  [["server", "--port", "65536"], /^elock server: invalid port "65536"/],
  [["server", "--port=-1"], /^elock server: invalid port "-1"/],
  [["server", "--dialect", "modern"], /^elock server: invalid dialect "modern"/],
  [["server", "--max-line-length", "8"], /^elock server: invalid --max-line-length "8"/],
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
  assert.match(err.join(""), /^elock server: invalid port "x"/);
  assert.equal(await main(["help", "server"], io), 0);
  assert.match(out.join(""), /^Usage: elock server/);
});

test("main() runs the server in process until its signal is aborted", SLOW, async () => {
  let err = "";
  let listening: () => void;
  const started = new Promise<void>((resolve) => listening = resolve);
  const stop = new AbortController();
  const done = main(["server", "--port", "0", "--sequential-ids"], {
    stdout: () => {},
    stderr: (text) => {
      err += text;
      if (text.includes("listening")) listening();
    },
    signal: stop.signal,
  });
  await started;
  const port = Number(err.match(/listening on 127\.0\.0\.1:(\d+)/)?.[1]);
  const client = await LineClient.connect(port);
  try {
    assert.equal(await client.request("conn_id"), "200 1");
  } finally {
    await client.close();
  }
  stop.abort("test");
  assert.equal(await done, 0);
  assert.match(err, /^elock: #1 connected from /m);
  assert.match(err, /^elock: test received, stopping\n(.*\n)*elock: stopped\n$/m);
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
