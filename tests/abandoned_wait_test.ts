/**
 * A wait given up by its caller (`signal`) frees its session at once: when
 * the session holds nothing else, the session goes on as a new one on a new
 * connection, and the connection the wait occupies is left to wait out the
 * server's answer on its own, then ends the old session (`set_timeout 0`,
 * which frees a late grant) and closes. It is not closed while the server may still answer the
 * wait: the reference servers keep the waiter of a closed connection (the
 * Erlang one grants it and keeps the grant for the release timeout, the
 * NodeJS one exits when it writes the grant). When the session holds
 * something, or its id was handed out, the wait is left to end on the
 * server and a late grant is released. Against the bundled server, over
 * TCP, both dialects, and against imitations of the reference servers'
 * behaviour.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { type ConnectOptions, ELockClient, sessionName } from "../mod.ts";
import { DIALECTS, type Fixture, withServer } from "./support/client_server.ts";
import { startErlangLikeServer } from "./support/erlang_like_server.ts";
import { until } from "./support/wait.ts";

/** Clients of the server on `port`, every one closed on dispose. */
function clientsOf(
  port: number,
): { connect(options?: ConnectOptions): Promise<ELockClient> } & AsyncDisposable {
  const open: ELockClient[] = [];
  return {
    async connect(options = {}) {
      const client = await ELockClient.connect({ port, ...options });
      open.push(client);
      return client;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(open.map((client) => client.close()));
    },
  };
}

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
    test(`[${dialect}] poolSize ${poolSize}: an aborted wait frees its session at once; its late grant is released on the connection it leaves`, async () => {
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
        assert.notEqual(sessionName(await client.sessionId()), ghost, "a new session");
        await other.unlock("busy");
        // The left connection gets `busy`, unlocks it and closes: nobody holds it then.
        await disconnected(fixture, ghost);
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
      assert.equal(a.lost, false);
      const probe = await connect();
      assert.equal(await probe.lock("a"), false, "a is still held");
      await other.unlock("busy");
      await disconnected(fixture, ghost);
      assert.equal(await probe.lock("busy"), true, "the late grant was released");
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

for (const closedWaiters of ["keep", "crash"] as const) {
  const server = closedWaiters === "keep" ? "Erlang" : "NodeJS";
  test(`[${server}-like server] an aborted wait frees its session; the late grant is released, the server stays up`, async () => {
    await using fake = await startErlangLikeServer({ closedWaiters });
    await using clients = clientsOf(fake.port);
    const connect = clients.connect;
    const holder = await connect();
    assert.equal(await holder.lock("k"), true);
    const client = await connect();
    const controller = new AbortController();
    const waiting = client.acquire("k", { timeout: 60_000, signal: controller.signal });
    await until(() => fake.waiting("k") === 1, "the wait queued");
    controller.abort(new Error("enough"));
    await assert.rejects(waiting, /enough/);
    // Free at once, while the old connection still waits for k.
    assert.equal(typeof (await client.stats()).locks, "number");
    assert.equal(fake.waiting("k"), 1, "the old connection's wait is still queued");
    assert.equal(await holder.unlock("k"), true);
    await until(() => fake.holderOf("k") === null, "the late grant released");
    assert.equal(fake.crashed, false, "the server is up");
    const probe = await connect();
    assert.equal(await probe.lock("k"), true, "nobody holds k");
    assert.equal(await probe.unlock("k"), true);
    const again = await client.acquire("k", { timeout: 10_000 });
    assert.equal(await again.release(), true);
  });

  test(`[${server}-like server] a fifth aborted wait while four left connections still wait keeps its connection; all are freed`, async () => {
    await using fake = await startErlangLikeServer({ closedWaiters });
    await using clients = clientsOf(fake.port);
    const connect = clients.connect;
    const holder = await connect();
    const client = await connect({ poolSize: 1 });
    const keys = Array.from({ length: 5 }, (_, i) => `k${i}`);
    for (const key of keys) assert.equal(await holder.lock(key), true);
    for (const key of keys) {
      const controller = new AbortController();
      const waiting = client.acquire(key, { timeout: 60_000, signal: controller.signal });
      await until(() => fake.waiting(key) === 1, `the wait for ${key} queued`);
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      if (key === keys[4]) break;
      // Left: the session is free at once (a call that neither holds nor pins it).
      assert.equal(typeof (await client.stats()).locks, "number");
    }
    // The fifth wait still occupies the session: a call queued now is answered after it ends.
    let answered = false;
    const queued = client.stats().then((stats) => (answered = true, stats));
    for (const key of keys.slice(0, 4)) assert.equal(await holder.unlock(key), true);
    await until(() => keys.slice(0, 4).every((key) => fake.holderOf(key) === null), "k0-k3 free");
    assert.equal(answered, false, "held back by the fifth wait");
    assert.equal(await holder.unlock(keys[4]!), true);
    assert.equal(typeof (await queued).locks, "number");
    for (const key of keys) {
      await until(() => fake.holderOf(key) === null, `${key} free`);
    }
    assert.equal(fake.crashed, false, "the server is up");
    const held = await client.acquire(keys[0]!, { timeout: 10_000 });
    assert.equal(await held.release(), true);
  });
}

test("[Erlang-like server with defect 9] an aborted wait keeps a session that held a lock: the key it handed over stays the waiter's", async () => {
  await using fake = await startErlangLikeServer({ closedWaiters: "keep", staleHandOff: true });
  await using clients = clientsOf(fake.port);
  const connect = clients.connect;
  const s = await connect({ poolSize: 1 });
  const w = await connect();
  const other = await connect();
  const k = await s.acquire("k");
  const handedOver = w.acquire("k", { timeout: 30_000 });
  await until(() => fake.waiting("k") === 1, "w waits for k");
  assert.equal(await k.release(), true);
  const wk = await handedOver;
  // k stays on s's session's list at the server: ending that session would free w's key.
  assert.equal(await other.lock("k2"), true);
  const controller = new AbortController();
  const waiting = s.acquire("k2", { timeout: 60_000, signal: controller.signal });
  await until(() => fake.waiting("k2") === 1, "s waits for k2");
  controller.abort(new Error("enough"));
  await assert.rejects(waiting, /enough/);
  assert.equal(await other.unlock("k2"), true);
  // s's session got k2 late; the client releases it on that session (which it kept).
  await until(() => fake.holderOf("k2") === null, "k2 released");
  const probe = await connect({ releaseTimeout: 0 });
  assert.equal(await probe.lock("k"), false, "k is w's: nobody else may take it");
  assert.equal(wk.lost, false);
  assert.equal(await wk.release(), true);
});
