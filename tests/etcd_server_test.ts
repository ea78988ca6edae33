/**
 * The bundled server on the etcd store, end to end: two servers on one etcd
 * (tests/support/etcd.ts; the test fails when etcd is not installed), real
 * TCP, both dialects, through ELockClient and raw lines.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { ELockClient } from "../mod.ts";
import { startServer } from "../src/server/mod.ts";
import { parseServerArgs } from "../src/cli/server_command.ts";
import { UsageError } from "../src/cli/subcommand.ts";
import { DIALECTS } from "./support/client_server.ts";
import { startEtcd } from "./support/etcd.ts";
import { Cli, SLOW } from "./support/cli_process.ts";
import { LineClient } from "./support/line_client.ts";
import { runProcess } from "./support/run_process.ts";
import { join } from "node:path";
import process from "node:process";
import { until } from "./support/wait.ts";

for (const dialect of DIALECTS) {
  test(
    `[${dialect}] etcd store: a client fails over from A to B and resumes there with its lock`,
    SLOW,
    async () => {
      await using etcd = await startEtcd();
      const options = { port: 0, dialect, store: "etcd", etcdEndpoints: etcd.endpoints } as const;
      const a = await startServer(options);
      await using b = await startServer(options);
      await using client = await ELockClient.connect({
        hosts: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`],
        releaseTimeout: 10_000,
        reconnect: { initialDelay: 10, maxDelay: 50 },
      });
      assert.equal(client.port, a.port);
      const lock = await client.acquire("k");
      await using probe = await ELockClient.connect({ port: b.port });
      assert.equal(await probe.lock("k"), false, "held through A, refused through B");
      let resumed = 0;
      client.addEventListener("resume", () => resumed++);
      await a.close();
      await until(() => client.port === b.port && resumed > 0, "the client resumed on B", 20_000);
      assert.equal(lock.lost, false, "the lock survived the fail-over");
      assert.equal(await probe.lock("k"), false, "still held, now through B");
      assert.equal(await lock.release(), true);
      assert.equal(await probe.lock("k"), true);
    },
  );

  test(
    `[${dialect}] etcd store: two servers, one table on the wire (stats, refusals)`,
    SLOW,
    async () => {
      await using etcd = await startEtcd();
      const options = { port: 0, dialect, store: "etcd", etcdEndpoints: etcd.endpoints } as const;
      await using a = await startServer(options);
      await using b = await startServer(options);
      await using ca = await ELockClient.connect({ port: a.port });
      await using cb = await ELockClient.connect({ port: b.port });
      assert.equal(await ca.lock("x"), true);
      assert.equal(await cb.lock("x"), false);
      const stats = await cb.stats();
      assert.equal(stats.clients, 2);
      assert.equal(stats.locks, 1);
      assert.equal(await ca.unlock("x"), true);
      assert.equal(await cb.lock("x", { timeout: 5_000 }), true);
    },
  );
}

test(
  "etcd store: without a quorum a command answers an error line, the connection stays usable",
  SLOW,
  async () => {
    await using etcd = await startEtcd(3);
    const options = { port: 0, store: "etcd", etcdEndpoints: etcd.endpoints } as const;
    await using ext = await startServer({ ...options, dialect: "extended" });
    await using orig = await startServer({ ...options, dialect: "original" });
    await using ce = await LineClient.connect(ext.port);
    await using co = await LineClient.connect(orig.port);
    assert.equal(await ce.request("lock before"), "200 Lock acquired");
    assert.equal(await co.request("lock before2"), "200 Acquired\r");
    await etcd.kill(1);
    await etcd.kill(2);
    assert.equal(await ce.request("lock k", 30_000), "500 Lock store unavailable");
    assert.equal(await co.request("lock k2", 30_000), "400 Lock store unavailable\r");
    assert.equal(await ce.request("unlock before", 30_000), "500 Lock store unavailable");
    assert.equal(await ce.request("stats", 30_000), "500 Lock store unavailable");
    assert.equal(ce.ended, false);
    assert.equal(co.ended, false);
    await etcd.restart(1);
    // Once the quorum is back, the same connections go on (the key is granted, or
    // found granted to this session by the request whose answer was lost).
    await until(
      async () => (await ce.request("lock k", 30_000)) === "200 Lock acquired",
      "ext",
      30_000,
    );
    await until(
      async () => (await co.request("lock k2", 30_000)) === "200 Acquired\r",
      "orig",
      30_000,
    );
    assert.equal(await ce.request("unlock before"), "200 Lock released");
  },
);

test(
  "etcd store: SIGKILL of the server a client is on: it fails over and resumes with its lock",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    const server = new Cli([
      "server",
      "--port",
      "0",
      "--store",
      "etcd",
      "--etcd-endpoints",
      etcd.endpoints.join(","),
    ]);
    try {
      const [, port] = await server.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/);
      await using b = await startServer({ port: 0, store: "etcd", etcdEndpoints: etcd.endpoints });
      await using client = await ELockClient.connect({
        hosts: [`127.0.0.1:${port}`, `127.0.0.1:${b.port}`],
        releaseTimeout: 10_000,
        reconnect: { initialDelay: 10, maxDelay: 50 },
      });
      assert.equal(client.port, Number(port));
      const lock = await client.acquire("k");
      await using probe = await ELockClient.connect({ port: b.port });
      assert.equal(await probe.lock("other"), true);
      assert.equal(await probe.lock("k"), false);
      let resumed = 0;
      client.addEventListener("resume", () => resumed++);
      server.signal("SIGKILL");
      await server.exit();
      await until(() => client.port === b.port && resumed > 0, "the client resumed on B", 30_000);
      assert.equal(lock.lost, false, "the lock survived the server's death");
      assert.equal(await probe.lock("k"), false, "still held, now through B");
      assert.equal(await probe.unlock("other"), true, "B's own client was not disturbed");
      assert.equal(await lock.release(), true);
      assert.equal(await probe.lock("k"), true);
    } finally {
      await server.dispose();
    }
  },
);

test("elock server: --store etcd and --etcd-endpoints are parsed, bad ones refused", () => {
  const options = parseServerArgs([
    "--store",
    "etcd",
    "--etcd-endpoints",
    "http://127.0.0.1:2379,http://127.0.0.1:2380",
    "--etcd-prefix",
    "t/",
  ]);
  assert.ok(options !== "help");
  assert.equal(options.store, "etcd");
  assert.deepEqual(options.etcdEndpoints, ["http://127.0.0.1:2379", "http://127.0.0.1:2380"]);
  assert.equal(options.etcdPrefix, "t/");
  const memory = parseServerArgs([]);
  assert.ok(memory !== "help" && memory.store === undefined);
  for (
    const args of [
      ["--store", "etcd"],
      ["--etcd-endpoints", "http://127.0.0.1:2379"],
      ["--store", "zookeeper"],
      ["--store", "etcd", "--etcd-endpoints", "127.0.0.1:2379"],
      ["--store", "memory", "--etcd-endpoints", "http://127.0.0.1:2379"],
    ]
  ) {
    assert.throws(() => parseServerArgs(args), UsageError, args.join(" "));
  }
});

test("startServer: store etcd without endpoints, or with sequential ids, is refused", async () => {
  await assert.rejects(startServer({ port: 0, store: "etcd" }), RangeError);
  await assert.rejects(
    startServer({
      port: 0,
      store: "etcd",
      etcdEndpoints: ["http://127.0.0.1:2379"],
      sequentialIds: true,
    }),
    RangeError,
  );
});

test(
  "etcd store: a server paused past its sessions' leases grants nothing from stale state",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    const server = new Cli([
      "server",
      "--port",
      "0",
      "--store",
      "etcd",
      "--etcd-endpoints",
      etcd.endpoints.join(","),
    ]);
    try {
      const [, port] = await server.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/);
      await using b = await startServer({ port: 0, store: "etcd", etcdEndpoints: etcd.endpoints });
      await using ca = await LineClient.connect(Number(port));
      await using cb = await LineClient.connect(b.port);
      assert.equal(await ca.request("set_timeout 1000"), "200 OK");
      assert.equal(await ca.request("lock k"), "200 Lock acquired");
      cb.send("lock k 60");
      server.signal("SIGSTOP");
      // A's keepalives stop: the session's lease runs out and B's waiter gets the key.
      assert.equal(await cb.line(60_000), "200 Lock acquired");
      server.signal("SIGCONT");
      // A wakes believing its client holds k: etcd decides, and says no.
      let reply: string | null;
      try {
        reply = await ca.request("lock k", 30_000);
      } catch {
        reply = null; // the connection was closed: the session is lost
      }
      assert.notEqual(reply, "200 Lock acquired");
      assert.equal(await cb.request("fence k") !== "403 Not locked by this session", true);
      assert.equal(await cb.request("unlock k"), "200 Lock released");
    } finally {
      try {
        server.signal("SIGCONT");
      } catch {
        // already gone
      }
      await server.dispose();
    }
  },
);

test("examples/ha.ts runs: the client fails over from A to B with its lock", SLOW, async () => {
  const deno = join(process.cwd(), "node_modules", ".bin", "deno");
  const run = await runProcess(deno, ["run", "-A", join(process.cwd(), "examples", "ha.ts")]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /another client gets invoice-42 through B: false/);
  assert.match(run.stdout, /lock lost: false/);
  assert.match(run.stdout, /after the release: true/);
});

for (const store of ["memory", "etcd"] as const) {
  test(
    `[${store} store] value waiters queued before a group formed join it, past a waiter for another value`,
    SLOW,
    async () => {
      await using etcd = store === "etcd" ? await startEtcd() : null;
      await using server = await startServer({
        port: 0,
        dialect: "extended",
        ...(etcd === null ? {} : { store: "etcd", etcdEndpoints: etcd.endpoints }),
      });
      const lines: LineClient[] = [];
      const connect = async () => {
        const line = await LineClient.connect(server.port);
        lines.push(line);
        return line;
      };
      try {
        const [a, c, x, d, probe] = [
          await connect(),
          await connect(),
          await connect(),
          await connect(),
          await connect(),
        ];
        const requests = async () => {
          probe.send("debug");
          const found: string[] = [];
          for (let line = await probe.line(); line !== "END"; line = await probe.line()) {
            if (line.startsWith("REQUEST ")) found.push(line);
          }
          return found.length;
        };
        assert.equal(await a.request("lock_value k red"), "200 Lock acquired");
        c.send("lock_value k blue 20");
        await until(async () => (await requests()) === 1, "C queued", 10_000);
        x.send("lock_value k red 20");
        await until(async () => (await requests()) === 2, "X queued", 10_000);
        d.send("lock_value k blue 20");
        await until(async () => (await requests()) === 3, "D queued", 10_000);
        assert.equal(await a.request("unlock k"), "200 Lock released");
        // C picks blue, and D, queued for blue before the group formed, joins it.
        assert.equal(await c.line(10_000), "200 Lock acquired");
        assert.equal(await d.line(10_000), "200 Lock acquired");
        assert.equal(await requests(), 1, "only X waits");
        assert.equal(await c.request("unlock k"), "200 Lock released");
        assert.equal(await d.request("unlock k"), "200 Lock released");
        assert.equal(await x.line(10_000), "200 Lock acquired", "then X gets red");
      } finally {
        for (const line of lines) await line.close();
      }
    },
  );
}

test(
  "etcd store: debug through either server shows each session's peer and name; " +
    "force_unlock (admin) through B frees a key held through A for its next waiter",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    const options = { port: 0, store: "etcd", etcdEndpoints: etcd.endpoints } as const;
    await using a = await startServer({ ...options, admin: true });
    await using b = await startServer({ ...options, admin: true });
    await using plain = await startServer(options);
    await using holder = await ELockClient.connect({ port: a.port, name: "holder-a" });
    await using waiter = await ELockClient.connect({ port: b.port });
    assert.equal(await holder.lock("job"), true);
    for (const server of [a, b]) {
      await using probe = await ELockClient.connect({ port: server.port });
      const info = await probe.debug();
      const named = info.sessions.find((s) => s.name === "holder-a");
      assert.ok(named !== undefined, `the name shows through port ${server.port}`);
      assert.match(named.peer ?? "", /^127\.0\.0\.1:\d+$/);
      assert.ok(info.sessions.every((s) => typeof s.peer === "string"), "every one has a peer");
    }
    await using refused = await LineClient.connect(plain.port);
    assert.equal(
      await refused.request("force_unlock job"),
      "403 Forbidden: force_unlock needs a server started with --admin",
    );
    const waits = waiter.lock("job", { timeout: 30_000 });
    await using probe = await ELockClient.connect({ port: b.port });
    await until(
      async () => (await probe.debug()).requests.some((r) => r.key === "job"),
      "the waiter queued",
      30_000,
    );
    await using admin = await LineClient.connect(b.port);
    assert.match(await admin.request("force_unlock job"), /^200 Released from #\S+$/);
    assert.equal(await waits, true, "the waiter got the key");
    assert.equal(await holder.unlock("job"), false, "the holder learns it at its unlock");
    assert.equal(await admin.request("force_unlock job2"), "404 Not locked");
  },
);
