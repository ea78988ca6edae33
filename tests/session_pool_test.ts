/**
 * The session pool behind `acquire()`, `withLock()` and `locks.request()`:
 * a wait on one key holds back nobody else, a task holding more locks than
 * the pool has sessions never waits for itself, an abandoned wait holds back
 * no other request, and `within` keeps nested locks on one session so the extended
 * server sees a deadlock. Against the bundled server, over TCP.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { DeadlockError, LockUnavailableError } from "../mod.ts";
import { DIALECTS, withServer } from "./support/client_server.ts";

for (const dialect of DIALECTS) {
  test(`[${dialect}] a request waiting for one key does not hold back a request for another`, async () => {
    await withServer(dialect, async ({ connect, waits }) => {
      const other = await connect();
      await other.lock("busy");
      const client = await connect();
      const waiting = client.acquire("busy", { timeout: 30_000 });
      await waits("busy");
      // Answered while the first request still waits on the server.
      const free = await client.acquire("free", { timeout: 5000 });
      assert.equal(free.lost, false);
      assert.equal(await other.lock("free"), false, "held for real");
      await other.unlock("busy");
      const busy = await waiting;
      assert.equal(await busy.release(), true);
      assert.equal(await free.release(), true);
      assert.equal(await other.lock("free"), true);
      assert.equal(await other.lock("busy"), true);
    });
  });

  test(`[${dialect}] a task holding more locks than the pool has sessions does not wait for itself`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const client = await connect({ poolSize: 2 });
      const probe = await connect();
      const locks = [];
      for (const key of ["a", "b", "c", "d", "e"]) {
        locks.push(await client.acquire(key, { timeout: 5000 }));
      }
      for (const key of ["a", "b", "c", "d", "e"]) assert.equal(await probe.lock(key), false, key);
      for (const lock of locks) assert.equal(await lock.release(), true, lock.key);
      for (const key of ["a", "b", "c", "d", "e"]) assert.equal(await probe.lock(key), true, key);
    });
  });

  test(`[${dialect}] an aborted wait holds back no other request: it goes on another session`, async () => {
    await withServer(dialect, async ({ connect, waits }) => {
      const other = await connect();
      await other.lock("busy");
      const client = await connect({ poolSize: 2 });
      const controller = new AbortController();
      const waiting = client.acquire("busy", { timeout: 60_000, signal: controller.signal });
      await waits("busy");
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      // Answered at once (the abandoned wait's session is left, or another one is used).
      const free = await client.acquire("free", { timeout: 60_000 });
      assert.equal(await other.lock("free"), false);
      assert.equal(await free.release(), true);
      await other.unlock("busy");
      assert.equal(
        await other.lock("busy", { timeout: 5000 }),
        true,
        "the late grant was released",
      );
    });
  });

  for (const poolSize of [1, 2]) {
    test(`[${dialect}] poolSize ${poolSize}: acquire() excludes a raw lock() of the same client, not re-enters it`, async () => {
      await withServer(dialect, async ({ connect }) => {
        const client = await connect({ poolSize });
        assert.equal(await client.lock("k"), true);
        await assert.rejects(client.acquire("k", { timeout: 300 }), LockUnavailableError);
        const waiting = client.acquire("k", { timeout: 30_000 });
        assert.equal(await client.unlock("k"), true);
        const held = await waiting;
        const probe = await connect();
        assert.equal(await probe.lock("k"), false);
        assert.equal(await held.release(), true);
        assert.equal(await probe.lock("k"), true);
      });
    });
  }

  test(`[${dialect}] timeout 0 while another task of the client holds the key: LockUnavailableError at once`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const client = await connect();
      const held = await client.acquire("k");
      await assert.rejects(client.acquire("k"), LockUnavailableError);
      await held.release();
      const again = await client.acquire("k");
      assert.equal(await again.release(), true);
    });
  });
}

test("[extended] locks nested with `within` stay on one session: a deadlock across clients is seen", async () => {
  await withServer("extended", async ({ connect, waits }) => {
    const one = await connect();
    const two = await connect();
    const a = await one.acquire("a");
    const b = await two.acquire("b");
    const oneWaits = one.acquire("b", { within: a, timeout: 30_000 });
    await waits("b");
    await assert.rejects(two.acquire("a", { within: b, timeout: 30_000 }), DeadlockError);
    assert.equal(await b.release(), true);
    const nested = await oneWaits;
    assert.equal(await nested.release(), true);
    assert.equal(await a.release(), true);
  });
});

test("[extended] a lock nested in one of the same key is re-entrant: releasing it keeps the outer", async () => {
  await withServer("extended", async ({ connect }) => {
    const client = await connect();
    const probe = await connect();
    const outer = await client.acquire("k");
    const inner = await client.acquire("k", { within: outer });
    assert.equal(await inner.release(), true);
    assert.equal(await probe.lock("k"), false, "the outer still holds it");
    assert.equal(outer.lost, false);
    assert.equal(await outer.release(), true);
    assert.equal(await probe.lock("k"), true);
  });
});
