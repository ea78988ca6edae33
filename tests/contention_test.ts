/**
 * Clients on separate connections contending for keys, against the bundled
 * server over real TCP: hand-off order, deadlines, aborts, late grants,
 * deadlocks and value-lock groups.
 *
 * No test asserts how long anything took; waits are bounded generously.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { DeadlockError } from "../mod.ts";
import { DIALECTS, withServer } from "./support/client_server.ts";
import { until } from "./support/wait.ts";
import { sessionName } from "../mod.ts";

for (const dialect of DIALECTS) {
  test(`[${dialect}] waiters are served first come, first served`, async () => {
    await withServer(dialect, async ({ connect, waits }) => {
      const holder = await connect();
      await holder.lock("k");
      const order: number[] = [];
      const waiters = await Promise.all([1, 2, 3].map(() => connect()));
      const grants: Promise<void>[] = [];
      for (const [i, waiter] of waiters.entries()) {
        grants.push(
          waiter.lock("k", { timeout: 30_000 }).then(async (ok) => {
            assert.equal(ok, true);
            order.push(i + 1);
            await waiter.unlock("k");
          }),
        );
        // Each wait reaches the server before the next one is sent.
        await waits("k", i + 1);
      }
      await holder.unlock("k");
      await Promise.all(grants);
      assert.deepEqual(order, [1, 2, 3]);
    });
  });

  test(`[${dialect}] a wait that runs out answers false at the client's deadline`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const holder = await connect();
      const waiter = await connect();
      await holder.lock("k");
      assert.equal(await waiter.lock("k", { timeout: 300 }), false);
      // The connection is still in step afterwards.
      assert.equal(await waiter.lock("other"), true);
      assert.equal(await waiter.unlock("k"), false);
    });
  });

  test(`[${dialect}] a wait that succeeds answers true once the holder unlocks`, async () => {
    await withServer(dialect, async ({ connect, waits }) => {
      const holder = await connect();
      const waiter = await connect();
      await holder.lock("k");
      const granted = waiter.lock("k", { timeout: 30_000 });
      await waits("k");
      await holder.unlock("k");
      assert.equal(await granted, true);
      assert.equal(await holder.lock("k"), false);
    });
  });

  test(`[${dialect}] aborting a wait rejects with the signal's reason; nothing leaks`, async () => {
    await withServer(dialect, async ({ connect, waits }) => {
      const holder = await connect();
      const waiter = await connect();
      const third = await connect();
      await holder.lock("k");
      const controller = new AbortController();
      const reason = new Error("user gave up");
      const wait = waiter.lock("k", { timeout: 30_000, signal: controller.signal });
      await waits("k");
      controller.abort(reason);
      await assert.rejects(wait, (error) => error === reason);
      // The server still has the wait: it grants it when the holder unlocks,
      // and the client releases it at once.
      await holder.unlock("k");
      await until(async () => await third.lock("k"), "the late grant released");
      assert.equal(await waiter.unlock("k"), false, "the waiter does not hold k");
    });
  });

  test(`[${dialect}] a lock granted after the deadline is kept for a later lock of the key`, {
    timeout: 60_000,
  }, async () => {
    await withServer(dialect, async ({ connect, waits }) => {
      const holder = await connect();
      const log: string[] = [];
      const waiter = await connect({ logger: { debug: (m) => log.push(m) } });
      // 1001 ms goes on the wire as 2 s: a grant in the second between is late. On a
      // stalled machine the server may time the wait out first; then try again.
      for (let attempt = 1; attempt <= 3; attempt++) {
        await holder.lock("k");
        const from = log.length;
        const wait = waiter.lock("k", { timeout: 1001 });
        await waits("k", attempt);
        assert.equal(await wait, false);
        // Queued behind the wait the server still runs: sent after its answer.
        const after = waiter.lock("k");
        await holder.unlock("k");
        assert.equal(await after, true);
        // Late grant or not, `after` holds k for real: releasing the late grant would
        // have freed it, since the session's locks are not counted.
        assert.equal(await holder.lock("k"), false);
        assert.equal(log.some((m) => m.includes("granted after its caller gave up")), false);
        assert.equal(await waiter.unlock("k"), true);
        assert.equal(await holder.lock("k"), true, "no lock left behind");
        // Two grants (the late one, then `after`'s) and a single unlock, sent by the test.
        const grants = log.slice(from).filter((m) =>
          /^elock < 200 (Acquired|Lock acquired)/.test(m)
        );
        if (grants.length === 2) return;
        await holder.unlock("k");
      }
      assert.fail(`no late grant in 3 attempts:\n${log.join("\n")}`);
    });
  });

  test(`[${dialect}] a lock granted after the deadline is released when no later lock wants it`, {
    timeout: 60_000,
  }, async () => {
    await withServer(dialect, async ({ connect, waits }) => {
      const holder = await connect();
      const log: string[] = [];
      const waiter = await connect({ logger: { debug: (m) => log.push(m) } });
      for (let attempt = 1; attempt <= 3; attempt++) {
        await holder.lock("k");
        const wait = waiter.lock("k", { timeout: 1001 });
        await waits("k", attempt);
        assert.equal(await wait, false);
        const stats = waiter.stats(); // queued behind the wait: the release goes ahead of it
        await holder.unlock("k");
        await stats;
        const late = log.some((m) => m.includes("granted after its caller gave up"));
        // Released or never granted: free for the holder either way.
        assert.equal(await holder.lock("k", { timeout: 5000 }), true, "no lock left behind");
        if (late) {
          assert.ok(log.indexOf("elock > unlock k") < log.indexOf("elock > stats"), log.join("\n"));
          return;
        }
      }
      assert.fail(`no late grant in 3 attempts:\n${log.join("\n")}`);
    });
  });

  test(`[${dialect}] an abort before the wait is sent sends nothing`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const holder = await connect();
      const waiter = await connect();
      await holder.lock("k");
      await holder.lock("j");
      const first = waiter.lock("j", { timeout: 30_000 });
      const controller = new AbortController();
      const second = waiter.lock("k", { timeout: 30_000, signal: controller.signal });
      controller.abort();
      await assert.rejects(second, (e: unknown) => (e as Error).name === "AbortError");
      await holder.unlock("j");
      assert.equal(await first, true);
      await holder.unlock("k");
      assert.equal(await holder.lock("k"), true, "k was never requested by the waiter");
      const aborted = new AbortController();
      aborted.abort();
      await assert.rejects(waiter.lock("z", { signal: aborted.signal }));
      assert.equal(await holder.lock("z"), true);
    });
  });
}

test("[extended] a deadlock between two clients is a DeadlockError with the cycle", async () => {
  await withServer("extended", async ({ connect }) => {
    const a = await connect();
    const b = await connect();
    const aid = sessionName(await a.sessionId());
    const bid = sessionName(await b.sessionId());
    await a.lock("d1");
    await b.lock("d2");
    const aWaits = a.lock("d2", { timeout: 30_000 });
    await until(async () => (await b.debug()).requests.length === 1, "a waits");
    await assert.rejects(b.lock("d1", { timeout: 30_000 }), (error: unknown) => {
      assert.ok(error instanceof DeadlockError);
      assert.deepEqual(error.cycle, [{ session: bid, key: "d1" }, { session: aid, key: "d2" }]);
      assert.equal(error.path, `#${bid} => d1 = #${aid} => d2 = #${bid}`);
      return true;
    });
    await b.unlock("d2");
    assert.equal(await aWaits, true);
  });
});

test("[extended] a deadlock across three clients names all three", async () => {
  await withServer("extended", async ({ connect }) => {
    const [a, b, c] = await Promise.all([connect(), connect(), connect()]);
    const [aid, bid, cid] = (await Promise.all([a!.sessionId(), b!.sessionId(), c!.sessionId()]))
      .map(sessionName);
    await a!.lock("e1");
    await b!.lock("e2");
    await c!.lock("e3");
    const aWaits = a!.lock("e2", { timeout: 30_000 });
    const bWaits = b!.lock("e3", { timeout: 30_000 });
    await until(async () => (await c!.debug()).requests.length === 2, "a and b wait");
    await assert.rejects(c!.lock("e1", { timeout: 30_000 }), (error: unknown) => {
      assert.ok(error instanceof DeadlockError);
      assert.deepEqual(error.cycle, [
        { session: cid, key: "e1" },
        { session: aid, key: "e2" },
        { session: bid, key: "e3" },
      ]);
      return true;
    });
    await c!.unlock("e3");
    assert.equal(await bWaits, true);
    await b!.unlock("e2");
    assert.equal(await aWaits, true);
  });
});

test("[extended] value-lock groups: every waiter for the next value is granted together", async () => {
  await withServer("extended", async ({ connect }) => {
    const [holder, r1, r2, w] = await Promise.all([connect(), connect(), connect(), connect()]);
    assert.equal(await holder!.lockValue("doc", "write"), true);
    const reads = [r1!, r2!].map((c) => c.lockValue("doc", "read", { timeout: 30_000 }));
    await until(async () => (await w!.debug()).requests.length === 2, "readers queued");
    assert.equal(await w!.lockValue("doc", "read"), false, "no joining while others queue");
    await holder!.unlock("doc");
    assert.deepEqual(await Promise.all(reads), [true, true]);
    const locks = (await w!.debug()).locks;
    assert.equal(locks.length, 1);
    assert.equal(locks[0]!.value, "read");
    assert.equal(locks[0]!.holders.length, 2);
  });
});
