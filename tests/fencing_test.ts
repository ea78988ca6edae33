/**
 * Fencing tokens (`acquire(key, { fence: true })`, the bundled server's
 * `fence KEY`): a number that grows with every grant of a key, so that a
 * resource can refuse a holder that paused past the loss of its lock. Over
 * TCP against the bundled server (both dialects), and against servers that
 * do not know the command (the lock is then released, not leaked).
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { ELockClient, UnsupportedCommandError } from "../mod.ts";
import { startServer } from "../src/server/mod.ts";
import { DIALECTS, withServer } from "./support/client_server.ts";
import { startErlangLikeServer } from "./support/erlang_like_server.ts";
import { LineClient } from "./support/line_client.ts";
import { startProxy } from "./support/proxy.ts";

for (const dialect of DIALECTS) {
  test(`[${dialect}] fence: tokens grow with every grant of a key, across sessions`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const one = await connect();
      const two = await connect();
      const tokens: bigint[] = [];
      for (let i = 0; i < 6; i++) {
        const client = i % 2 === 0 ? one : two;
        const lock = await client.acquire("k", { fence: true, timeout: 5000 });
        assert.equal(typeof lock.token, "bigint");
        tokens.push(lock.token!);
        // Another key's grant in between: tokens of k still only grow.
        const other = await two.acquire(`other${i}`, { fence: true });
        assert.ok(other.token! > lock.token!);
        assert.equal(await other.release(), true);
        assert.equal(await lock.release(), true);
      }
      for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, `${tokens}`);
      const plain = await one.acquire("k");
      assert.equal(plain.token, undefined, "not asked, not given");
      await plain.release();
    });
  });

  test(`[${dialect}] fence KEY on the wire: the grant's token, the same while held; 403 when not held`, async () => {
    await using server = await startServer({ port: 0, dialect });
    const eol = dialect === "original" ? "\r" : "";
    const a = await LineClient.connect(server.port);
    try {
      assert.match(await a.request("fence k"), /^403 /);
      assert.match(await a.request("lock k"), /^200 /);
      const token = await a.request("fence k");
      assert.match(token, new RegExp(`^200 [0-9]+${eol}$`));
      assert.match(await a.request("lock k"), /^200 /, "re-entrant");
      assert.equal(await a.request("fence k"), token, "the same grant, the same token");
      assert.match(await a.request("unlock k"), /^200 /);
      assert.match(await a.request("fence k"), /^403 /);
    } finally {
      await a.close();
    }
  });
}

test("fence on a server without the command: UnsupportedCommandError, and the lock is released", async () => {
  await using server = await startErlangLikeServer();
  await using client = await ELockClient.connect({ port: server.port });
  await assert.rejects(client.acquire("k", { fence: true }), UnsupportedCommandError);
  await using probe = await ELockClient.connect({ port: server.port });
  assert.equal(await probe.lock("k"), true, "not leaked");
});

for (const dialect of DIALECTS) {
  test(`[${dialect}] fence: a lock lost while its fence was asked is not handed out with a token`, {
    timeout: 60_000,
  }, async () => {
    await withServer(dialect, async ({ connect, port }) => {
      await using proxy = await startProxy(port);
      const client = await connect({
        port: proxy.port,
        releaseTimeout: 1000,
        commandTimeout: 30_000,
        poolSize: 1,
      });
      // Every reply comes 2 s late: the lease (0.9 s after the grant's reply) runs out while the
      // fence is asked, and the client frees the session's locks (unlock_all) before its next call.
      proxy.delay({ toClient: 2000 });
      const outcome = await client.acquire("k", { fence: true }).then(
        (lock) => `resolved: lost=${lock.lost} token=${lock.token}`,
        (error: Error) => `rejected: ${error.name}`,
      );
      assert.equal(outcome, "rejected: SessionLostError");
      proxy.delay({ toClient: 0 });
      // Not held by this client any more: another one gets it.
      const other = await connect();
      assert.equal(await other.lock("k", { timeout: 10_000 }), true);
    });
  });
}
