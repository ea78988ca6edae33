/**
 * The same suite over every transport the running runtime has: Node `net`
 * (all three runtimes), `Deno.connect` on Deno, `Bun.connect` on Bun, and
 * the default pick. (`socketTransport` runs in workerd: tests/workerd/.)
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionClosedError, ELockClient, socketTransport } from "../mod.ts";
import { closedPort, withServer } from "./support/client_server.ts";
import { startScriptedServer } from "./support/proxy.ts";
import { TRANSPORTS } from "./support/transports.ts";

for (const [name, make] of TRANSPORTS) {
  test(`${name} transport: lock, contend, unlock`, async () => {
    await withServer("extended", async ({ connect }) => {
      const a = await connect({ transport: make() });
      const b = await connect({ transport: make() });
      assert.equal(await a.lock("k"), true);
      assert.equal(await b.lock("k"), false);
      assert.equal(await a.unlock("k"), true);
      assert.equal(await b.lock("k"), true);
    });
  });

  test(`${name} transport: 5,000 pipelined calls and a 2 MB reply arrive whole`, {
    timeout: 60_000,
  }, async () => {
    await withServer("extended", async ({ connect }) => {
      const a = await connect({ transport: make() });
      const key = (i: number) => `key-${i}-${"x".repeat(300)}`;
      const locked = await Promise.all(Array.from({ length: 5000 }, (_, i) => a.lock(key(i))));
      assert.ok(locked.every((ok) => ok));
      const info = await a.debug();
      assert.equal(info.locks.length, 5000);
      assert.equal(info.locks[4999]!.key, key(4999));
      assert.deepEqual(await a.stats(), { clients: 1, locks: 5000, monitoring: 1 });
    });
  });

  test(`${name} transport: the server closing the connection rejects the pending call`, async () => {
    await using server = await startScriptedServer((line, write) => {
      if (line === "lock a") write("200 Acquired\r\n");
    });
    const client = await ELockClient.connect({
      port: server.port,
      transport: make(),
      reconnect: false,
    });
    assert.equal(await client.lock("a"), true);
    const pending = assert.rejects(client.lock("b", { timeout: 10_000 }), ConnectionClosedError);
    await server.close();
    await pending;
    await client.close();
  });

  test(`${name} transport: a refused connection rejects; an aborted one rejects with the reason`, async () => {
    const port = await closedPort();
    await assert.rejects(ELockClient.connect({ port, transport: make() }), ConnectionClosedError);
    const controller = new AbortController();
    const reason = new Error("stop");
    controller.abort(reason);
    await assert.rejects(
      ELockClient.connect({ port, transport: make(), signal: controller.signal }),
      (e) => e === reason,
    );
  });
}

test("socketTransport() needs a connect function", () => {
  assert.throws(() => socketTransport(undefined as never), TypeError);
});
