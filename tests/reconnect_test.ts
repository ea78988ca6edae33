/**
 * Reconnect and session resume over real broken connections: a fault
 * proxy (tests/support/proxy.ts) between the client and the bundled server
 * drops, resets, stalls and cuts connections in the middle of a reply; the
 * server is also restarted. In both dialects. On Deno the tests run with the
 * op and resource sanitizers on: nothing may be left open.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ConnectionClosedError,
  type ELockClientEvent,
  type ELockClientEventType,
  SessionLostError,
} from "../mod.ts";
import { startServer } from "../src/server/mod.ts";
import { DIALECTS, withServer } from "./support/client_server.ts";
import { type Proxy, startProxy } from "./support/proxy.ts";
import { leakCheckedTest } from "./support/leak_checked.ts";
import { until } from "./support/wait.ts";
import { record } from "./support/lock_truth.ts";

const happened = (events: ELockClientEvent[], type: ELockClientEventType) => () =>
  events.some((e) => e.type === type);

const FAULTS: [string, (proxy: Proxy) => void][] = [
  ["cut", (proxy) => proxy.cut()],
  ["dropped cleanly (FIN)", (proxy) => proxy.drop()],
  ["reset (RST)", (proxy) => proxy.reset()],
];

for (const dialect of DIALECTS) {
  for (const [name, fault] of FAULTS) {
    leakCheckedTest(
      `[${dialect}] a connection ${name} while holding three locks: resumed, still held, unlocked normally`,
      async () => {
        await withServer(dialect, async ({ connect, port }) => {
          await using proxy = await startProxy(port);
          // One session for the three handles: poolSize 1.
          const a = await connect({ port: proxy.port, releaseTimeout: 60_000, poolSize: 1 });
          const events = record(a);
          const id = await a.sessionId();
          const locks = await Promise.all(["k1", "k2", "k3"].map((key) => a.acquire(key)));
          fault(proxy);
          await until(happened(events, "resume"), "the session resumed");
          assert.deepEqual(
            events.map((e) => e.type),
            ["disconnect", "reconnect", "connect", "resume"],
          );
          assert.ok(events[0]!.error instanceof ConnectionClosedError);
          assert.equal(events[3]!.sessionId, id);
          assert.equal(proxy.sent[1], `conn_id ${id}\nset_timeout 60000\nconn_id\n`);
          assert.equal(a.reconnecting, false);
          const b = await connect();
          for (const key of ["k1", "k2", "k3"]) assert.equal(await b.lock(key), false, key);
          for (const lock of locks) {
            assert.equal(lock.lost, false);
            assert.equal(await lock.release(), true);
          }
          for (const key of ["k1", "k2", "k3"]) assert.equal(await b.lock(key), true, key);
          assert.equal(await a.sessionId(), id);
        });
      },
    );
  }

  leakCheckedTest(
    `[${dialect}] calls in flight and queued across a drop run after the resume`,
    async () => {
      await withServer(dialect, async ({ connect, port, waits }) => {
        const b = await connect();
        await b.lock("w");
        await using proxy = await startProxy(port);
        const a = await connect({ port: proxy.port });
        const events = record(a);
        const waiting = a.lock("w", { timeout: 30_000 });
        const queued = [a.lock("x"), a.stats(), a.unlock("x")];
        await waits("w");
        proxy.cut();
        await until(happened(events, "resume"), "the session resumed");
        await waits("w", 2); // the lock was sent again
        await b.unlock("w");
        assert.equal(await waiting, true);
        const [locked, stats, unlocked] = await Promise.all(queued);
        assert.equal(locked, true);
        assert.equal((stats as { locks: number }).locks, 2);
        assert.equal(unlocked, true);
        assert.equal(await b.lock("w"), false, "a holds w");
      });
    },
  );

  leakCheckedTest(
    `[${dialect}] a reply cut in the middle of its line: the call is sent again and answered`,
    async () => {
      await withServer(dialect, async ({ connect, port }) => {
        await using proxy = await startProxy(port);
        const a = await connect({ port: proxy.port });
        const events = record(a);
        proxy.cutMidReply();
        assert.equal(await a.lock("k"), true, "granted, reply cut, asked again: re-entrant");
        assert.ok(events.some((e) => e.type === "resume"));
        proxy.cutMidReply();
        assert.equal(await a.unlock("k"), true, "released, reply cut, asked again");
        const b = await connect();
        assert.equal(await b.lock("k"), true);
      });
    },
  );

  leakCheckedTest(
    `[${dialect}] a stall past the command timeout: the call fails, the session resumes, a lock granted meanwhile is released`,
    async () => {
      await withServer(dialect, async ({ connect, port }) => {
        await using proxy = await startProxy(port);
        const a = await connect({ port: proxy.port, commandTimeout: 500 });
        const events = record(a);
        assert.equal(await a.lock("held"), true);
        proxy.stall();
        const stalled = a.lock("granted-unseen");
        await assert.rejects(stalled, /no reply within 500 ms/);
        await until(happened(events, "resume"), "the session resumed");
        // The unseen grant of "granted-unseen" was released after the resume.
        const b = await connect();
        await until(async () => await b.lock("granted-unseen"), "granted-unseen released");
        assert.equal(await b.lock("held"), false, "the lock held before the stall still is");
        assert.equal(await a.unlock("held"), true);
      });
    },
  );

  leakCheckedTest(
    `[${dialect}] the server restarted: sessionlost fires, handles report it, the client carries on`,
    async () => {
      const first = await startServer({ port: 0, dialect });
      const serverPort = first.port;
      let second: Awaited<ReturnType<typeof startServer>> | null = null;
      await using proxy = await startProxy(serverPort);
      const { ELockClient } = await import("../mod.ts");
      const a = await ELockClient.connect({ port: proxy.port, releaseTimeout: 1000 });
      try {
        const events = record(a);
        const lock = await a.acquire("k");
        assert.equal(await a.lock("plain"), true);
        await first.close();
        second = await startServer({ port: serverPort, dialect });
        await until(happened(events, "sessionlost"), "sessionlost", 15_000);
        const lost = events.find((e) => e.type === "sessionlost")!;
        assert.ok(lost.error instanceof SessionLostError);
        assert.deepEqual([...lost.keys!].sort(), ["k", "plain"]);
        assert.equal(lock.lost, true);
        assert.equal(lock.signal.aborted, true);
        assert.ok(lock.signal.reason instanceof SessionLostError);
        assert.ok(!events.some((e) => e.type === "resume"));
        // A new session: the old locks are not held, new calls work.
        await until(() => !a.reconnecting, "reconnected");
        assert.equal(await a.lock("k"), true);
        // (Refused attempts may leave empty sessions waiting out their release timeout.)
        assert.equal((await a.stats()).locks, 1);
        // The new session is resumed after the next drop, as the first one would have been.
        // (The client knows the new session's id without asking again.)
        events.length = 0;
        proxy.cut();
        await until(
          () => events.some((e) => e.type === "resume" || e.type === "sessionlost"),
          "the new session resumed",
        );
        assert.ok(!events.some((e) => e.type === "sessionlost"), "not lost");
        assert.equal(events.find((e) => e.type === "resume")!.sessionId, await a.sessionId());
        assert.equal(await a.unlock("k"), true, "k held across the drop");
      } finally {
        await a.close();
        await second?.close();
        await first.close();
      }
    },
  );

  leakCheckedTest(
    `[${dialect}] a server gone for good: the session is lost, then the client gives up and closes`,
    async () => {
      await withServer(dialect, async ({ connect, port }) => {
        const proxy = await startProxy(port);
        const a = await connect({ port: proxy.port, releaseTimeout: 300, commandTimeout: 600 });
        const events = record(a);
        const lock = await a.acquire("k");
        await proxy.close(); // cuts the connection and refuses new ones
        const pending = assert.rejects(a.stats(), (error: unknown) => {
          assert.ok(error instanceof ConnectionClosedError);
          assert.match(error.message, /cannot reconnect/);
          return true;
        });
        await pending;
        assert.equal(a.closed, true);
        assert.equal(lock.lost, true);
        const types = new Set(events.map((e) => e.type));
        for (const type of ["disconnect", "reconnect", "sessionlost", "error"] as const) {
          assert.ok(types.has(type), type);
        }
        assert.ok(!types.has("resume"));
      });
    },
  );

  leakCheckedTest(`[${dialect}] close() while reconnecting stops it; calls reject`, async () => {
    await withServer(dialect, async ({ connect, port }) => {
      const proxy = await startProxy(port);
      const a = await connect({ port: proxy.port, releaseTimeout: 60_000 });
      const events = record(a);
      await proxy.close();
      await until(happened(events, "error"), "a failed attempt");
      const pending = assert.rejects(a.lock("k"), ConnectionClosedError);
      await a.close();
      await pending;
      assert.equal(a.closed, true);
      assert.equal(a.reconnecting, false);
    });
  });

  leakCheckedTest(
    `[${dialect}] with releaseTimeout 0 there is no reconnect by default`,
    async () => {
      await withServer(dialect, async ({ connect, port }) => {
        await using proxy = await startProxy(port);
        const a = await connect({ port: proxy.port, releaseTimeout: 0 });
        const events = record(a);
        assert.equal(proxy.sent[0], "set_timeout 0\n", "no conn_id: nothing to resume");
        const held = await a.acquire("held");
        const pending = assert.rejects(a.lock("k", { timeout: 5000 }), ConnectionClosedError);
        proxy.stall();
        await until(() => proxy.sent[0]!.includes("lock k"), "lock sent");
        proxy.cut();
        await pending;
        assert.equal(a.closed, true);
        // The holder learns at once that its lock is gone with the connection.
        assert.deepEqual(events.map((e) => e.type), ["disconnect", "sessionlost"]);
        assert.deepEqual(events[1]!.keys, ["held"]);
        assert.equal(held.lost, true);
        assert.ok(held.signal.reason instanceof SessionLostError);
      });
    },
  );

  leakCheckedTest(
    `[${dialect}] a connection that died silently is found by the heartbeat while a lock is held`,
    async () => {
      await withServer(dialect, async ({ connect, port }) => {
        await using proxy = await startProxy(port);
        const a = await connect({ port: proxy.port, releaseTimeout: 60_000, heartbeat: 200 });
        const events = record(a);
        const lock = await a.acquire("k");
        // The network freezes: no reset, no reply. Nobody calls the client.
        proxy.stall();
        await until(happened(events, "resume"), "found dead, reconnected and resumed");
        assert.match(String((events[0]!.error as Error).message), /no reply within 200 ms/);
        assert.equal(lock.lost, false);
        const b = await connect();
        assert.equal(await b.lock("k"), false, "k still held by a");
        assert.equal(await lock.release(), true);
        assert.equal(await b.lock("k"), true);
      });
    },
  );

  leakCheckedTest(
    `[${dialect}] the heartbeat is quiet while no lock is held, and off with heartbeat: false`,
    async () => {
      await withServer(dialect, async ({ connect, port }) => {
        await using proxy = await startProxy(port);
        const idle = await connect({ port: proxy.port, heartbeat: 50 });
        const off = await connect({ port: proxy.port, heartbeat: false });
        const beating = await connect({ port: proxy.port, heartbeat: 50 });
        assert.equal(await off.lock("off"), true);
        assert.equal(await beating.lock("on"), true);
        await until(() => proxy.sent[2]!.split("conn_id\n").length > 3, "beats while holding");
        assert.equal(proxy.sent[0], "conn_id\n", "no lock held: no beat");
        assert.equal(proxy.sent[1], "conn_id\nlock off\n", "heartbeat: false: no beat");
        await idle.close();
      });
    },
  );

  leakCheckedTest(
    `[${dialect}] delays in both directions change nothing but the pace`,
    async () => {
      await withServer(dialect, async ({ connect, port }) => {
        await using proxy = await startProxy(port);
        proxy.delay({ toServer: 20, toClient: 30 });
        const a = await connect({ port: proxy.port });
        const b = await connect();
        const results = await Promise.all([a.lock("k"), a.lock("j"), a.unlock("j"), a.stats()]);
        assert.deepEqual(results.slice(0, 3), [true, true, true]);
        assert.equal(await b.lock("k"), false);
        assert.equal(await b.lock("j"), true);
      });
    },
  );
}

leakCheckedTest("reconnect options are checked", async () => {
  const { ELockClient } = await import("../mod.ts");
  await assert.rejects(
    ELockClient.connect({ reconnect: { initialDelay: -1 } }),
    RangeError,
  );
  await assert.rejects(
    ELockClient.connect({ reconnect: { initialDelay: 100, maxDelay: 10 } }),
    RangeError,
  );
  await assert.rejects(ELockClient.connect({ reconnect: "yes" as never }), TypeError);
  for (const heartbeat of [0, -1, Number.NaN, Infinity]) {
    await assert.rejects(ELockClient.connect({ heartbeat }), RangeError, String(heartbeat));
  }
});
