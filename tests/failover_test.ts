/**
 * `hosts`: several servers for one client. `connect()` takes the first that
 * answers; after a drop the client reconnects to the next server and
 * resumes there. Against two bundled servers (memory store, so they share
 * nothing: the resume on the second is refused, and the session's locks are
 * reported lost, never believed), over TCP, both dialects.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { ELockClient, type ELockClientEvent, SessionLostError } from "../mod.ts";
import { type ServerEvent, startServer } from "../src/server/mod.ts";
import { closedPort, DIALECTS } from "./support/client_server.ts";
import { until } from "./support/wait.ts";

for (const dialect of DIALECTS) {
  test(`[${dialect}] connect() takes the first server of hosts that answers`, async () => {
    const down = await closedPort();
    await using server = await startServer({ port: 0, dialect });
    await using client = await ELockClient.connect({
      hosts: [`127.0.0.1:${down}`, `127.0.0.1:${server.port}`],
    });
    assert.equal(client.port, server.port);
    assert.equal(await client.lock("k"), true);
  });

  test(`[${dialect}] a dropped client fails over to the next server; its locks are reported lost there`, async () => {
    const a = await startServer({ port: 0, dialect });
    await using b = await startServer({ port: 0, dialect });
    await using client = await ELockClient.connect({
      hosts: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`],
      releaseTimeout: 5000,
      reconnect: { initialDelay: 10, maxDelay: 50 },
    });
    assert.equal(client.port, a.port);
    const lock = await client.acquire("k");
    const lost: string[][] = [];
    client.addEventListener(
      "sessionlost",
      (e) => lost.push([...((e as ELockClientEvent).keys ?? [])]),
    );
    await a.close();
    // The second server does not know the session: the lock is lost, not resumed.
    await until(() => lock.lost, "the lock reported lost");
    assert.ok(lock.signal.reason instanceof SessionLostError);
    assert.deepEqual(lost, [["k"]]);
    await until(() => client.port === b.port, "the client on the second server");
    const again = await client.acquire("k", { timeout: 10_000 });
    await using probe = await ELockClient.connect({ port: b.port });
    assert.equal(await probe.lock("k"), false, "held on the second server");
    assert.equal(await again.release(), true);
    assert.equal(await probe.lock("k"), true);
  });
}

test("hosts: bad entries are refused before anything is sent", async () => {
  await assert.rejects(ELockClient.connect({ hosts: [] }), TypeError);
  await assert.rejects(ELockClient.connect({ hosts: ["a:1"], host: "b" }), TypeError);
  await assert.rejects(ELockClient.connect({ hosts: ["a:99999"] }), RangeError);
  await assert.rejects(ELockClient.connect({ hosts: ["a b:1"] }), TypeError);
  await assert.rejects(ELockClient.connect({ hosts: [" a:1"] }), TypeError);
});

test("hosts: IPv6 in brackets, and the port defaulting to `port`", async () => {
  await using server = await startServer({ port: 0 });
  const down = await closedPort();
  await using client = await ELockClient.connect({
    hosts: [`[::1]:${down}`, "127.0.0.1"],
    port: server.port,
  });
  assert.equal(client.host, "127.0.0.1");
  assert.equal(client.port, server.port);
});

test("hosts: when no server answers, the error names each one", async () => {
  const one = await closedPort();
  const two = await closedPort();
  await assert.rejects(
    ELockClient.connect({ hosts: [`127.0.0.1:${one}`, `127.0.0.1:${two}`] }),
    (error: Error) => {
      assert.match(
        error.message,
        new RegExp(`^Cannot connect to 127\\.0\\.0\\.1:${one}: .*; 127\\.0\\.0\\.1:${two}: `),
      );
      return true;
    },
  );
});

for (const dialect of DIALECTS) {
  test(`[${dialect}] a wait given up frees its connection without leaving the server (no fail-over)`, async () => {
    const events: ServerEvent[] = [];
    await using a = await startServer({ port: 0, dialect, onEvent: (e) => events.push(e) });
    await using b = await startServer({ port: 0, dialect });
    await using holder = await ELockClient.connect({ port: a.port });
    assert.equal(await holder.lock("k"), true);
    await using client = await ELockClient.connect({
      hosts: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`],
      reconnect: { initialDelay: 10, maxDelay: 50 },
    });
    const controller = new AbortController();
    const waiting = client.acquire("k", { signal: controller.signal, timeout: 60_000 });
    await until(() => events.some((e) => e.type === "wait" && e.key === "k"), "the wait on a");
    controller.abort(new Error("given up"));
    await assert.rejects(waiting, /given up/);
    // The session left its connection (a new one, to the same server): k is still the holder's.
    assert.equal(await client.lock("k"), false);
    assert.equal(client.port, a.port);
  });
}
