/**
 * `client.locks`: the Web Locks API's shape over eLock, against the bundled
 * server over real TCP.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { UnsupportedCommandError } from "../mod.ts";
import { DIALECTS, withServer } from "./support/client_server.ts";
import { sessionName } from "../mod.ts";

for (const dialect of DIALECTS) {
  test(`[${dialect}] locks.request() runs the callback holding the lock and returns its result`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const b = await connect();
      const result = await a.locks.request("job", async (lock) => {
        assert.deepEqual(lock, { name: "job", mode: "exclusive" });
        assert.equal(await b.locks.request("job", { ifAvailable: true }, (l) => l), null);
        return "done";
      });
      assert.equal(result, "done");
      assert.equal(
        await b.locks.request("job", { ifAvailable: true }, (l) => l?.name),
        "job",
        "released when the callback settled",
      );
    });
  });

  test(`[${dialect}] locks.request() releases when the callback throws, and rethrows`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const b = await connect();
      await assert.rejects(
        a.locks.request("job", () => {
          throw new Error("boom");
        }),
        /boom/,
      );
      assert.equal(await b.locks.request("job", { ifAvailable: true }, (l) => l !== null), true);
    });
  });

  test(`[${dialect}] an exclusive request waits for the holder on another client`, async () => {
    await withServer(dialect, async ({ connect, waits }) => {
      const a = await connect();
      const b = await connect();
      const events: string[] = [];
      let release!: () => void;
      const held = a.locks.request("job", async () => {
        events.push("a got it");
        await new Promise<void>((resolve) => release = resolve);
        events.push("a done");
      });
      while (events.length === 0) await new Promise((r) => setTimeout(r, 5));
      const second = b.locks.request("job", () => void events.push("b got it"));
      await waits("job");
      release();
      await Promise.all([held, second]);
      assert.deepEqual(events, ["a got it", "a done", "b got it"]);
    });
  });

  test(`[${dialect}] requests of one client for one name run one after another`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const events: string[] = [];
      await Promise.all([1, 2, 3].map((n) =>
        a.locks.request("job", async () => {
          events.push(`start ${n}`);
          await new Promise((r) => setTimeout(r, 10));
          events.push(`end ${n}`);
        })
      ));
      assert.deepEqual(events, ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
    });
  });

  test(`[${dialect}] an aborted request rejects with the reason and never runs`, async () => {
    await withServer(dialect, async ({ connect, waits }) => {
      const a = await connect();
      const b = await connect();
      let release!: () => void;
      let holding = false;
      const held = a.locks.request("job", () => {
        holding = true;
        return new Promise<void>((r) => release = r);
      });
      while (!holding) await new Promise((r) => setTimeout(r, 5));
      const controller = new AbortController();
      const reason = new Error("no longer needed");
      let ran = false;
      const waiting = b.locks.request(
        "job",
        { signal: controller.signal },
        () => void (ran = true),
      );
      await waits("job");
      controller.abort(reason);
      await assert.rejects(waiting, (e) => e === reason);
      release();
      await held;
      assert.equal(ran, false);
      const c = await connect();
      assert.equal(
        await c.locks.request("job", { ifAvailable: true }, (l) => l !== null),
        true,
        "b's late grant was released",
      );
    });
  });
}

test("[extended] shared requests hold together; exclusive waits for all of them", async () => {
  await withServer("extended", async ({ connect, waits }) => {
    const [r1, r2, w, observer] = await Promise.all([connect(), connect(), connect(), connect()]);
    const writerId = sessionName(await w!.sessionId());
    const order: string[] = [];
    let releaseReaders!: () => void;
    const readersDone = new Promise<void>((resolve) => releaseReaders = resolve);
    const readers = [r1!, r2!].map((client, i) =>
      client.locks.request("doc", { mode: "shared" }, async (lock) => {
        assert.equal(lock?.mode, "shared");
        order.push(`read ${i + 1}`);
        await readersDone;
        order.push(`read ${i + 1} done`);
      })
    );
    while (order.length < 2) await new Promise((r) => setTimeout(r, 5));
    const writer = w!.locks.request("doc", (lock) => {
      assert.equal(lock?.mode, "exclusive");
      order.push("write");
    });
    await waits("doc");
    // The writer's connection is busy with its wait: look from another client.
    const snapshot = await observer!.locks.query();
    assert.equal(snapshot.held.length, 2);
    assert.ok(snapshot.held.every((l) => l.name === "doc" && l.mode === "shared"));
    assert.deepEqual(snapshot.pending, [{ name: "doc", clientId: writerId }]);
    releaseReaders();
    await Promise.all([...readers, writer]);
    assert.deepEqual(order.slice(2).sort(), ["read 1 done", "read 2 done", "write"].sort());
    assert.equal(order.at(-1), "write");
  });
});

test("[extended] a shared request waits for an exclusive holder", async () => {
  await withServer("extended", async ({ connect, waits }) => {
    const [a, b] = await Promise.all([connect(), connect()]);
    const order: string[] = [];
    let release!: () => void;
    const exclusive = a!.locks.request("doc", async () => {
      order.push("write");
      await new Promise<void>((r) => release = r);
      order.push("write done");
    });
    while (order.length === 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(
      await b!.locks.request("doc", { mode: "shared", ifAvailable: true }, (l) => l),
      null,
    );
    const shared = b!.locks.request("doc", { mode: "shared" }, () => void order.push("read"));
    await waits("doc");
    const snapshot = await a!.locks.query();
    assert.deepEqual(snapshot.held, [{
      name: "doc",
      mode: "exclusive",
      clientId: sessionName(await a!.sessionId()),
    }]);
    release();
    await Promise.all([exclusive, shared]);
    assert.deepEqual(order, ["write", "write done", "read"]);
  });
});

test("[original] a shared request needs an extended server; exclusive works with lock", async () => {
  await withServer("original", async ({ connect }) => {
    const a = await connect();
    await assert.rejects(
      a.locks.request("doc", { mode: "shared" }, () => "never"),
      UnsupportedCommandError,
    );
    assert.equal(await a.locks.request("doc", () => "ran"), "ran");
    await assert.rejects(a.locks.query(), UnsupportedCommandError);
  });
});

test("locks.request() checks its arguments", async () => {
  await withServer("extended", async ({ connect }) => {
    const a = await connect();
    const request = a.locks.request as (...args: unknown[]) => Promise<unknown>;
    await assert.rejects(request.call(a.locks, "x"), TypeError);
    await assert.rejects(request.call(a.locks, "x", { mode: "nope" }, () => {}), TypeError);
    await assert.rejects(request.call(a.locks, "x", { steal: true }, () => {}), TypeError);
    await assert.rejects(
      a.locks.request("a b", () => {}),
      (e: unknown) => (e as Error).name === "InvalidKeyError",
    );
  });
});
