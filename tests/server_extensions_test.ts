/**
 * The bundled server's extension commands on the memory store, on the wire:
 * `name TEXT` (a client name that `debug` shows with each session's peer
 * address) and `force_unlock KEY` (an operator's command, refused unless the
 * server runs with `admin`). The etcd store's are in etcd_server_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { ELockClient } from "../mod.ts";
import { type ServerEvent, startServer } from "../src/server/mod.ts";
import { DIALECTS } from "./support/client_server.ts";
import { LineClient } from "./support/line_client.ts";
import { until } from "./support/wait.ts";
import { startProxy, startScriptedServer } from "./support/proxy.ts";
import { startErlangLikeServer } from "./support/erlang_like_server.ts";

/** The lines of a `debug` reply, after its first line, up to `END`. */
async function debugLines(client: LineClient): Promise<string[]> {
  assert.match(await client.request("debug"), /^200 DEBUG\r?$/);
  const lines: string[] = [];
  for (;;) {
    const line = (await client.line()).replace(/\r$/, "");
    if (line === "END") return lines;
    lines.push(line);
  }
}

for (const dialect of DIALECTS) {
  const eol = dialect === "original" ? "\r" : "";
  const error = dialect === "original" ? "400" : "500";

  test(`[${dialect}] name TEXT: 200, checked; force_unlock is refused without admin`, async () => {
    const events: ServerEvent[] = [];
    await using server = await startServer({ port: 0, dialect, onEvent: (e) => events.push(e) });
    await using a = await LineClient.connect(server.port);
    assert.equal(await a.request("name billing-7"), `200 OK${eol}`);
    assert.equal(
      await a.request("name two words"),
      dialect === "original" ? '400 Unknown command: "name"\r' : "500 Internal server error",
    );
    assert.equal(await a.request(`name ${"x".repeat(65)}`), `${error} Invalid name${eol}`);
    const acquired = dialect === "original" ? "200 Acquired\r" : "200 Lock acquired";
    assert.equal(await a.request("lock k"), acquired);
    assert.equal(
      await a.request("force_unlock k"),
      `403 Forbidden: force_unlock needs a server started with --admin${eol}`,
    );
    const released = dialect === "original" ? "200 Unlocked\r" : "200 Lock released";
    assert.equal(await a.request("unlock k"), released, "still held: nothing was forced");
    const refused = events.filter((e) => e.type === "force_unlock");
    assert.equal(refused.length, 1);
    assert.equal(refused[0]!.type === "force_unlock" && refused[0]!.outcome, "refused");
  });

  test(`[${dialect}] force_unlock KEY with admin frees the key, its next waiter gets it`, async () => {
    const events: ServerEvent[] = [];
    await using server = await startServer({
      port: 0,
      dialect,
      admin: true,
      onEvent: (e) => events.push(e),
    });
    await using holder = await ELockClient.connect({ port: server.port, name: "holder" });
    await using waiter = await ELockClient.connect({ port: server.port });
    assert.equal(await holder.lock("job"), true);
    const waits = waiter.lock("job", { timeout: 30_000 });
    await using admin = await LineClient.connect(server.port);
    await until(() => events.some((e) => e.type === "wait"), "the waiter queued", 30_000);
    const freed = await admin.request("force_unlock job");
    assert.match(freed, new RegExp(`^200 Released from #\\S+${eol}$`));
    assert.equal(await waits, true, "the waiter got the key");
    assert.equal(await holder.unlock("job"), false, "the holder learns it at its unlock");
    assert.equal(await admin.request("force_unlock nothing-here"), `404 Not locked${eol}`);
    const logged = events.filter((e) => e.type === "force_unlock");
    assert.deepEqual(logged.map((e) => e.type === "force_unlock" && e.outcome), [
      "released",
      "not_locked",
    ]);
    assert.equal(logged[0]!.type === "force_unlock" && logged[0]!.key, "job");
  });
}

test("[extended] debug shows each session's peer address and client name", async () => {
  await using server = await startServer({ port: 0 });
  await using named = await ELockClient.connect({ port: server.port, name: "report-job" });
  await using plain = await LineClient.connect(server.port);
  await named.lock("k");
  const sessions = (await debugLines(plain)).filter((l) => l.startsWith("SESSION "))
    .map((l) => JSON.parse(l.slice(8)));
  assert.equal(sessions.length, 2);
  for (const s of sessions) assert.match(s.peer, /^127\.0\.0\.1:\d+$/);
  assert.deepEqual(sessions.map((s) => s.name ?? null).sort(), ["report-job", null].sort());
  const info = await named.debug();
  const mine = info.sessions.find((s) => s.name === "report-job");
  assert.ok(mine !== undefined, "the client's debug() parse has the name");
  assert.match(mine.peer ?? "", /^127\.0\.0\.1:\d+$/);
});

test("ConnectOptions.name: sent again after a reconnect; refused harmlessly elsewhere", async () => {
  const events: ServerEvent[] = [];
  await using server = await startServer({
    port: 0,
    verbose: true,
    onEvent: (e) => events.push(e),
  });
  await using proxy = await startProxy(server.port);
  await using client = await ELockClient.connect({
    port: proxy.port,
    name: "worker-1",
    releaseTimeout: 10_000,
    reconnect: { initialDelay: 10, maxDelay: 50 },
  });
  assert.equal(await client.lock("k"), true);
  const names = () =>
    events.filter((e) => e.type === "command" && e.line === "name worker-1" && e.reply === "200 OK")
      .length;
  assert.equal(names(), 1);
  proxy.cut();
  await until(() => events.some((e) => e.type === "resume"), "the client resumed", 30_000);
  await until(() => names() === 2, "the name was sent again on the new connection", 30_000);
  assert.equal(await client.lock("k"), true, "still its lock");

  // A server without the extension (400 Unknown command) changes nothing.
  await using reference = await startErlangLikeServer();
  await using other = await ELockClient.connect({ port: reference.port, name: "worker-1" });
  assert.equal(await other.lock("k"), true);
  assert.equal(reference.holderOf("k") !== null, true);

  // Nor does one that answers 500, as the NodeJS server does to any unknown command.
  await using nodeLike = await startScriptedServer((line, write) => {
    if (line.startsWith("name ")) write("500 Internal server error\n");
    else if (line === "conn_id") write("200 7\n");
    else write(line.startsWith("lock ") ? "200 Lock acquired\n" : "200 OK\n");
  });
  await using third = await ELockClient.connect({ port: nodeLike.port, name: "worker-1" });
  assert.equal(await third.lock("k"), true);
  assert.equal(await third.sessionId(), "7");

  // A bad name is refused before anything is sent.
  for (const name of ["", "two words", "x".repeat(65), "caf\u00e9", "tab\there"]) {
    await assert.rejects(
      ELockClient.connect({ port: reference.port, name }),
      TypeError,
      JSON.stringify(name),
    );
  }
});
