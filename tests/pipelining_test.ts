/**
 * One client, many calls: pipelining in call order, the waiting-lock
 * barrier, what goes on the wire, and failures of the connection (a real
 * proxy that cuts or silences real connections; a scripted server for
 * malformed replies).
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionClosedError, ELockClient, ProtocolError } from "../mod.ts";
import { DIALECTS, withServer } from "./support/client_server.ts";
import { startProxy, startScriptedServer } from "./support/proxy.ts";
import { until } from "./support/wait.ts";

for (const dialect of DIALECTS) {
  test(
    `[${dialect}] 1,000 concurrent calls resolve in call order with the right replies, waiting locks mixed in`,
    {
      timeout: 60_000,
    },
    async () => {
      await withServer(dialect, async ({ connect, waits }) => {
        const other = await connect();
        await other.lock("held");
        await other.lock("w");
        const client = await connect();
        const id = await client.sessionId();
        const settled: number[] = [];
        const calls: Promise<unknown>[] = [];
        const expected: unknown[] = [];
        for (let i = 0; i < 1000; i++) {
          let call: Promise<unknown>;
          if (i === 500) {
            call = client.lock("w", { timeout: 30_000 });
            expected.push(true);
          } else if (i % 5 === 0) {
            call = client.lock(`p${i}`);
            expected.push(true);
          } else if (i % 5 === 1) {
            call = client.lock("held");
            expected.push(false);
          } else if (i % 5 === 2) {
            call = client.unlock(`p${i - 2}`);
            // p500 was never locked (call 500 is the waiting lock): only the extended server says 200.
            expected.push(i !== 502 || dialect === "extended");
          } else if (i % 5 === 3) {
            call = client.command("conn_id").then((reply) => reply.message);
            expected.push(id);
          } else {
            call = client.lock(`q${i}`, { timeout: 5000 });
            expected.push(true);
          }
          calls.push(call.then((value) => {
            settled.push(i);
            return value;
          }));
        }
        await waits("w");
        await other.unlock("w");
        const results = await Promise.all(calls);
        assert.deepEqual(results, expected);
        assert.deepEqual(settled, [...settled].sort((a, b) => a - b), "settled in call order");
      });
    },
  );

  test(`[${dialect}] nothing is sent behind a waiting lock until it is answered`, async () => {
    await withServer(dialect, async ({ connect, port, waits }) => {
      const other = await connect();
      await other.lock("w");
      await using proxy = await startProxy(port);
      const client = await connect({ port: proxy.port });
      const wait = client.lock("w", { timeout: 30_000 });
      const next = [client.lock("a"), client.stats(), client.unlock("a")];
      await waits("w");
      assert.equal(proxy.sent[0], "conn_id\nlock w 30\n");
      await other.unlock("w");
      assert.equal(await wait, true);
      const [locked, stats, unlocked] = await Promise.all(next);
      assert.equal(locked, true);
      assert.equal((stats as { locks: number }).locks, 2);
      assert.equal(unlocked, true);
      assert.equal(proxy.sent[0], "conn_id\nlock w 30\nlock a\nstats\nunlock a\n");
    });
  });

  test(`[${dialect}] waits go on the wire in whole seconds, rounded up; no wait is the one-word form`, async () => {
    await withServer(dialect, async ({ connect, port }) => {
      await using proxy = await startProxy(port);
      const client = await connect({ port: proxy.port });
      // Free keys: each is granted at once, well inside its deadline.
      assert.equal(await client.lock("e", { timeout: Infinity }), true);
      assert.equal(await client.lock("a"), true);
      assert.equal(await client.lock("b", { timeout: 999 }), true);
      assert.equal(await client.lock("c", { timeout: 1000 }), true);
      assert.equal(await client.lock("d", { timeout: 1001 }), true);
      // While the session holds locks, a long wait is asked in parts of half the lease
      // (29 s with the default release timeout), so that its replies keep the lease.
      assert.equal(await client.lock("f", { timeout: 60_000 }), true);
      assert.equal(
        proxy.sent[0],
        "conn_id\nlock e 2147483\nlock a\nlock b 1\nlock c 1\nlock d 2\nlock f 14\n",
      );
    });
  });

  test(`[${dialect}] without reconnect, a connection cut mid-command rejects every pending and queued call`, async () => {
    await withServer(dialect, async ({ connect, port, waits }) => {
      const other = await connect();
      await other.lock("w");
      await using proxy = await startProxy(port);
      const client = await connect({ port: proxy.port, reconnect: false });
      const calls = [
        client.lock("w", { timeout: 30_000 }),
        client.lock("x"),
        client.stats(),
        client.unlockAll(),
      ];
      await waits("w");
      proxy.cut();
      for (const call of calls) await assert.rejects(call, ConnectionClosedError);
      assert.equal(client.closed, true);
      await assert.rejects(client.sessionId(), ConnectionClosedError);
    });
  });

  test(`[${dialect}] without reconnect, a server that stops answering fails every call within the command timeout`, async () => {
    await withServer(dialect, async ({ connect, port }) => {
      await using proxy = await startProxy(port);
      const client = await connect({ port: proxy.port, commandTimeout: 1000, reconnect: false });
      assert.equal(await client.lock("a"), true);
      proxy.silence();
      const calls = [client.lock("b"), client.stats(), client.unlock("a")];
      for (const call of calls) {
        await assert.rejects(call, (error: unknown) => {
          assert.ok(error instanceof ConnectionClosedError);
          assert.match(error.message, /no reply within 1000 ms/);
          return true;
        });
      }
      assert.equal(client.closed, true);
    });
  });
}

test("replies ending in \\r\\n and in \\n are both read", async () => {
  await using server = await startScriptedServer((line, write) => {
    if (line === "lock a") write("200 Acquired\r\n");
    else if (line === "lock b") write("200 Lock acquired\n");
    else if (line === "stats") {
      write("200 STATS\r\nSTAT clients 1\nSTAT locks 2\r\nSTAT monitoring 1\nEND\r\n");
    }
  });
  const client = await ELockClient.connect({ port: server.port, reconnect: false });
  try {
    assert.equal(await client.lock("a"), true);
    assert.equal(await client.lock("b"), true);
    assert.deepEqual(await client.stats(), { clients: 1, locks: 2, monitoring: 1 });
  } finally {
    await client.close();
  }
});

test("a reply line over the limit is a ProtocolError; the calls behind it get ConnectionClosedError", async () => {
  await using server = await startScriptedServer((line, write) => {
    if (line === "conn_id") write(`200 ${"x".repeat(5000)}\n`);
  });
  const client = await ELockClient.connect({
    port: server.port,
    maxLineLength: 1000,
    reconnect: false,
  });
  const first = client.sessionId();
  const second = client.lock("a");
  await assert.rejects(first, ProtocolError);
  await assert.rejects(second, ConnectionClosedError);
  assert.equal(client.closed, true);
  await client.close();
});

test("a reply without a code, or one nobody asked for, closes the connection", async () => {
  await using server = await startScriptedServer((line, write) => {
    if (line === "lock a") write("hello\n");
    if (line === "lock b") {
      write("200 Acquired\n");
      // A second reply nobody asked for, while nothing is pending.
      setTimeout(() => write("200 Acquired\n"), 50);
    }
  });
  const garbled = await ELockClient.connect({ port: server.port, reconnect: false });
  await assert.rejects(garbled.lock("a"), ProtocolError);
  await garbled.close();
  const extra = await ELockClient.connect({
    port: server.port,
    commandTimeout: 30_000,
    reconnect: false,
  });
  assert.equal(await extra.lock("b"), true);
  await until(() => extra.closed, "the connection closed on the unsolicited reply");
  await assert.rejects(extra.lock("c"), ConnectionClosedError);
  await extra.close();
});
