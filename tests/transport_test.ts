/**
 * The same suite over every transport the running runtime has: Node `net`
 * (all three runtimes), `Deno.connect` on Deno, `Bun.connect` on Bun, and
 * the default pick. (`socketTransport` runs in workerd: tests/workerd/.)
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
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
  test(
    `${name} transport: raw writes behind a full socket arrive in order, and every drained() settles`,
    {
      timeout: 60_000,
    },
    async () => {
      // A peer that reads nothing until told to: the client's socket buffers fill.
      const received: Uint8Array[] = [];
      let total = 0;
      const server = net.createServer({ pauseOnConnect: true });
      const accepted = new Promise<net.Socket>((resolve) => {
        server.once("connection", (socket: net.Socket) => resolve(socket));
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const port = (server.address() as net.AddressInfo).port;
      const connection = await make().connect({ host: "127.0.0.1", port });
      const raw = connection.raw;
      const peer = await accepted;
      try {
        if (raw === undefined) return; // A stream-only transport: nothing raw to check.
        raw.start({ data: () => {}, end: () => {} });
        // Two writers, as the pump and a farewell can be: each waits for drained() after `false`.
        const chunk = (i: number) => new Uint8Array(65536).fill(i % 251);
        let sent = 0;
        const waits: Promise<void>[] = [];
        for (let i = 0; waits.length < 2 && i < 2000; i++) {
          sent += 65536;
          if (!raw.write(chunk(i))) waits.push(raw.drained());
        }
        assert.equal(waits.length, 2, "the socket's buffers never filled");
        const settled = waits.map((wait) => wait.then(() => "drained", (e) => `rejected: ${e}`));
        const all = new Promise<void>((resolve) => {
          peer.on("data", (bytes: Uint8Array) => {
            received.push(bytes);
            total += bytes.length;
            if (total >= sent) resolve();
          });
        });
        peer.resume();
        await all;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const stuck = new Promise<string>((resolve) => {
          timer = setTimeout(() => resolve("never settled"), 20_000);
        });
        const outcomes = await Promise.all(settled.map((s) => Promise.race([s, stuck])));
        clearTimeout(timer);
        assert.deepEqual(outcomes, ["drained", "drained"]);
        const bytes = new Uint8Array(total);
        let at = 0;
        for (const part of received) {
          bytes.set(part, at);
          at += part.length;
        }
        assert.equal(bytes.length, sent);
        for (let i = 0; i * 65536 < sent; i++) {
          assert.equal(bytes[i * 65536], i % 251, `chunk ${i}`);
          assert.equal(bytes[i * 65536 + 65535], i % 251, `chunk ${i}`);
        }
      } finally {
        peer.destroy();
        await connection.close();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  );
}

test("socketTransport() needs a connect function", () => {
  assert.throws(() => socketTransport(undefined as never), TypeError);
});
