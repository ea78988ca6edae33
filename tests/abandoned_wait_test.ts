/**
 * A wait given up by its caller (`signal`) frees its session at once: when
 * the session holds nothing else, the client writes `set_timeout 0` on the
 * connection the wait occupies and leaves it, so the server drops the wait
 * (or frees a late grant) the moment it sees the connection end, and the
 * session goes on as a new one. When the session holds something, or its
 * id was handed out, the wait is left to end on the server and a late grant
 * is released. Against the bundled server, over TCP, both dialects.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { sessionName } from "../mod.ts";
import { DIALECTS, type Fixture, withServer } from "./support/client_server.ts";
import { until } from "./support/wait.ts";

/** The server session that waited for `key` (the first wait for it). */
function waiter(fixture: Fixture, key: string): string {
  const wait = fixture.events.find((e) => e.type === "wait" && e.key === key);
  assert.ok(wait !== undefined && wait.type === "wait");
  return wait.session;
}

/** Resolves once the server has seen the connection of `session` end. */
function disconnected(fixture: Fixture, session: string): Promise<void> {
  return until(
    () => fixture.events.some((e) => e.type === "disconnect" && e.session === session),
    `session ${session} disconnected`,
  );
}

for (const dialect of DIALECTS) {
  for (const poolSize of [1, 4]) {
    test(`[${dialect}] poolSize ${poolSize}: an aborted wait frees its session at once, and the server drops the wait`, async () => {
      await withServer(dialect, async (fixture) => {
        const { connect, waits } = fixture;
        const other = await connect();
        await other.lock("busy");
        const client = await connect({ poolSize });
        const controller = new AbortController();
        const waiting = client.acquire("busy", { timeout: 60_000, signal: controller.signal });
        await waits("busy");
        const ghost = waiter(fixture, "busy");
        controller.abort(new Error("enough"));
        await assert.rejects(waiting, /enough/);
        // Answered while `busy` is still held: the wait no longer occupies the session.
        const free = await client.acquire("free", { timeout: 0 });
        assert.equal(await client.lock("raw"), true, "the raw API is not held back either");
        assert.equal(await free.release(), true);
        assert.equal(await client.unlock("raw"), true);
        await disconnected(fixture, ghost);
        await other.unlock("busy");
        // Nobody waits for `busy` on the server any more: it is free at once.
        const probe = await connect();
        assert.equal(await probe.lock("busy"), true);
        assert.equal(fixture.events.filter((e) => e.type === "wait").length, 1);
      });
    });
  }

  test(`[${dialect}] an aborted wait on a second pool session leaves the first one's lock held`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      await other.lock("busy");
      const client = await connect({ poolSize: 4 });
      const a = await client.acquire("a");
      const controller = new AbortController();
      const waiting = client.acquire("busy", { timeout: 60_000, signal: controller.signal });
      await waits("busy");
      const ghost = waiter(fixture, "busy");
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      await disconnected(fixture, ghost);
      assert.equal(a.lost, false);
      const probe = await connect();
      assert.equal(await probe.lock("a"), false, "a is still held");
      await other.unlock("busy");
      assert.equal(await probe.lock("busy"), true, "nobody waits for busy");
      assert.equal(await a.release(), true);
      assert.equal(await probe.lock("a"), true);
    });
  });

  test(`[${dialect}] an aborted nested wait keeps its session (it holds a lock): the late grant is released`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      await other.lock("busy");
      const client = await connect();
      const a = await client.acquire("a");
      const controller = new AbortController();
      const waiting = client.acquire("busy", {
        within: a,
        timeout: 60_000,
        signal: controller.signal,
      });
      await waits("busy");
      const ghost = waiter(fixture, "busy");
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      await other.unlock("busy");
      const probe = await connect();
      assert.equal(
        await probe.lock("busy", { timeout: 10_000 }),
        true,
        "the late grant was released",
      );
      assert.equal(a.lost, false);
      assert.equal(await probe.lock("a"), false, "a is still held");
      assert.equal(
        fixture.events.some((e) => e.type === "disconnect" && e.session === ghost),
        false,
        "the session holding a was kept",
      );
      assert.equal(await a.release(), true);
    });
  });

  test(`[${dialect}] a session whose id was handed out is kept after an aborted wait`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      await other.lock("busy");
      const client = await connect({ poolSize: 1 });
      const id = await client.sessionId();
      const controller = new AbortController();
      const waiting = client.acquire("busy", { timeout: 60_000, signal: controller.signal });
      await waits("busy");
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      await other.unlock("busy");
      const probe = await connect();
      assert.equal(
        await probe.lock("busy", { timeout: 10_000 }),
        true,
        "the late grant was released",
      );
      assert.equal(await client.sessionId(), id);
    });
  });

  test(`[${dialect}] a raw lock() wait that is aborted keeps the client's session`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      await other.lock("busy");
      const client = await connect();
      const controller = new AbortController();
      const waiting = client.lock("busy", { timeout: 60_000, signal: controller.signal });
      await waits("busy");
      const ghost = waiter(fixture, "busy");
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      await other.unlock("busy");
      const probe = await connect();
      assert.equal(
        await probe.lock("busy", { timeout: 10_000 }),
        true,
        "the late grant was released",
      );
      assert.equal(sessionName(await client.sessionId()), ghost, "the same session");
    });
  });
}
