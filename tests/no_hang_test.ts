/**
 * No hang, no leak: servers that misbehave in the worst ways end each call
 * in its documented error, and leave no socket open once the client is
 * closed. The scripted servers answer `conn_id` like a real one, so the
 * client runs with its defaults (reconnect on). On Deno the tests run with
 * the op and resource sanitizers on.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConnectionClosedError, ProtocolError, UnexpectedResponseError } from "../mod.ts";
import { ELockClient } from "../mod.ts";
import { startScriptedServer } from "./support/proxy.ts";
import { leakCheckedTest } from "./support/leak_checked.ts";
import { until } from "./support/wait.ts";

/** Answers `conn_id` (with or without an id) as a real server would. */
function connId(line: string, write: (text: string) => void): boolean {
  if (line === "conn_id") write("200 7\r\n");
  else if (line.startsWith("conn_id ")) write("200 Resumed\r\n");
  else if (line.startsWith("set_timeout ")) write("200 OK\r\n");
  else return false;
  return true;
}

leakCheckedTest(
  "a server that stops answering in the middle of a reply: the call fails at the command timeout",
  async () => {
    await using server = await startScriptedServer((line, write) => {
      if (connId(line, write)) return;
      if (line === "lock k") write("200 Lock acq");
    });
    const client = await ELockClient.connect({ port: server.port, commandTimeout: 500 });
    const events: string[] = [];
    client.addEventListener("disconnect", (e) => events.push(e.type));
    client.addEventListener("resume", (e) => events.push(e.type));
    await assert.rejects(client.lock("k"), (error: unknown) => {
      assert.ok(error instanceof ConnectionClosedError);
      assert.match(error.message, /no reply within 500 ms/);
      return true;
    });
    await until(() => events.includes("resume"), "the session resumed on a new connection");
    assert.equal(events[0], "disconnect");
    await client.close();
    await until(() => server.connections === 0, "every socket closed");
  },
);

leakCheckedTest(
  "a server that sends a 10 MiB line: ProtocolError at the line limit, the connection is closed",
  async () => {
    await using server = await startScriptedServer((line, write) => {
      if (connId(line, write)) return;
      if (line === "stats") write(`200 ${"x".repeat(10 * 1024 * 1024)}\n`);
      if (line === "lock k") write("200 Lock acquired\r\n");
    });
    const client = await ELockClient.connect({ port: server.port });
    const lock = await client.acquire("k");
    await assert.rejects(client.stats(), (error: unknown) => {
      assert.ok(error instanceof ProtocolError);
      assert.match(error.message, /too long/);
      return true;
    });
    assert.equal(client.closed, true, "a protocol error is not reconnected");
    assert.equal(lock.lost, true, "its holder is told the lock is gone");
    await assert.rejects(client.lock("k"), ProtocolError);
    await until(() => server.connections === 0, "every socket closed");
    await client.close();
  },
);

leakCheckedTest(
  "a server that closes right after 200: the call succeeds; a command it drops every time fails after 3 retries",
  async () => {
    await using server = await startScriptedServer((line, write, close) => {
      if (connId(line, write)) return;
      if (line === "lock k") write("200 Lock acquired\r\n");
      close();
    });
    const client = await ELockClient.connect({ port: server.port });
    const events: string[] = [];
    for (const type of ["disconnect", "resume"] as const) {
      client.addEventListener(type, (e) => events.push(e.type));
    }
    assert.equal(await client.lock("k"), true);
    await until(() => events.includes("resume"), "resumed after the close that followed 200");
    events.length = 0;
    await assert.rejects(client.stats(), ConnectionClosedError);
    // Sent 4 times: each time the connection dropped and the session was resumed.
    assert.equal(events.filter((type) => type === "disconnect").length, 4);
    await client.close();
    await until(() => server.connections === 0, "every socket closed");
  },
);

leakCheckedTest(
  "a reply with an unknown code: UnexpectedResponseError, and the connection stays usable",
  async () => {
    await using server = await startScriptedServer((line, write) => {
      if (connId(line, write)) return;
      if (line === "lock k") write("600 Something new\r\n");
      if (line === "unlock k") write("200 Lock released\r\n");
    });
    const client = await ELockClient.connect({ port: server.port });
    await assert.rejects(client.lock("k"), (error: unknown) => {
      assert.ok(error instanceof UnexpectedResponseError);
      assert.equal(error.reply, "600 Something new");
      return true;
    });
    assert.equal(await client.unlock("k"), true);
    await client.close();
    await until(() => server.connections === 0, "every socket closed");
  },
);
