/**
 * The etcd store (src/server/etcd): two stores on one etcd behave as the two
 * servers of one table. Real etcd members (tests/support/etcd.ts; the test
 * fails when etcd is not installed), no mocks: a killed server is the
 * store's `abandon()` fault injection (its keepalives stop, it never writes
 * again). Outcomes are asserted, never durations.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { EtcdStore, type EtcdStoreOptions } from "../src/server/etcd/store.ts";
import { EtcdGateway, type Json } from "../src/server/etcd/gateway.ts";
import { StoreUnavailableError } from "../src/server/store.ts";
import type { LockResult } from "../src/server/lock_table.ts";
import { type EtcdCluster, startEtcd } from "./support/etcd.ts";
import { SLOW } from "./support/cli_process.ts";
import { until } from "./support/wait.ts";

/** Two servers' stores (`a`, `b`) on one etcd; closed on dispose. */
async function servers(
  etcd: EtcdCluster,
  options: Partial<EtcdStoreOptions> = {},
): Promise<{ a: EtcdStore; b: EtcdStore } & AsyncDisposable> {
  const a = await EtcdStore.connect({ endpoints: etcd.endpoints, ...options });
  const b = await EtcdStore.connect({ endpoints: etcd.endpoints, ...options });
  return {
    a,
    b,
    async [Symbol.asyncDispose]() {
      await a.close();
      await b.close();
    },
  };
}

const acquired = (r: LockResult) => r.kind === "acquired";

test(
  "etcd store: a key held through A is refused through B, and freed by its unlock",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    await using pair = await servers(etcd);
    const { a, b } = pair;
    const sa = await a.createSession();
    const sb = await b.createSession();
    assert.deepEqual(await a.lock(sa, "k", null, 0), { kind: "acquired" });
    assert.deepEqual(await b.lock(sb, "k", null, 0), {
      kind: "unavailable",
      holders: [sa.id],
      value: null,
    });
    assert.deepEqual(await b.unlock(sb, "k"), { kind: "not_yours", holders: [sa.id] });
    assert.deepEqual(await a.lock(sa, "k", null, 0), { kind: "acquired" }, "re-entrant");
    assert.deepEqual(await a.unlock(sa, "k"), { kind: "released" });
    assert.deepEqual(await a.unlock(sa, "k"), { kind: "not_locked" });
    assert.deepEqual(await b.lock(sb, "k", null, 0), { kind: "acquired" });
    assert.deepEqual(await b.stats(), { clients: 2, locks: 1 });
    assert.deepEqual(await a.stats(), { clients: 2, locks: 1 }, "stats show the whole table");
    const debug = await a.debug();
    assert.deepEqual(debug.locks, [{ key: "k", holders: [sb.id], value: null }]);
    assert.deepEqual(debug.sessions.map((s) => s.id).sort(), [sa.id, sb.id].sort());
    await b.unlockAll(sb);
    assert.deepEqual(await a.stats(), { clients: 2, locks: 0 });
  },
);

test("etcd store: waiters across servers are served first come, first served", SLOW, async () => {
  await using etcd = await startEtcd();
  await using pair = await servers(etcd);
  const { a, b } = pair;
  const holder = await a.createSession();
  assert.ok(acquired(await a.lock(holder, "hot", null, 0)));
  const order: string[] = [];
  const waiters = [];
  const names = ["b1", "a2", "b3", "a4"];
  const sessions = [];
  for (const name of names) {
    const store = name.startsWith("a") ? a : b;
    const s = await store.createSession();
    sessions.push(s);
    // Queued in this order: each lock() resolves its enqueue before the next starts.
    const pending = store.lock(s, "hot", null, 60_000);
    waiters.push(pending.then(async (r) => {
      assert.ok(acquired(r), `${name} granted`);
      order.push(name);
      assert.deepEqual(await store.unlock(s, "hot"), { kind: "released" });
    }));
    await until(
      async () => (await a.debug()).requests.length === order.length + waiters.length,
      `${name} queued`,
      10_000,
    );
  }
  assert.deepEqual((await b.debug()).requests.map((r) => r.session), sessions.map((s) => s.id));
  assert.deepEqual(await a.unlock(holder, "hot"), { kind: "released" });
  await Promise.all(waiters);
  assert.deepEqual(order, names);
});

test(
  "etcd store: a session resumes on B after its connection to A dropped, with its locks",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    await using pair = await servers(etcd);
    const { a, b } = pair;
    const s = await a.createSession();
    assert.ok(acquired(await a.lock(s, "k1", null, 0)));
    assert.ok(acquired(await a.lock(s, "k2", null, 0)));
    const token = await a.fence(s, "k1");
    const fresh = await b.createSession();
    assert.equal((await b.resume(fresh, s.secret)).result, "active", "still connected to A");
    assert.equal((await b.resume(fresh, s.id)).result, "unknown", "a public name never resumes");
    await a.disconnect(s);
    const { result, session } = await b.resume(fresh, s.secret);
    assert.equal(result, "resumed");
    assert.equal(session.id, s.id);
    assert.deepEqual([...session.held.keys()].sort(), ["k1", "k2"]);
    assert.equal(await b.fence(session, "k1"), token, "same grant, same token");
    const other = await a.createSession();
    assert.equal((await a.lock(other, "k1", null, 0)).kind, "unavailable");
    assert.equal((await a.resume(other, s.secret)).result, "active", "now connected to B");
    assert.deepEqual(await b.unlock(session, "k1"), { kind: "released" });
    assert.ok(acquired(await a.lock(other, "k1", null, 0)));
    // A's release timer of the old connection must not end the resumed session.
    assert.equal((await a.lock(other, "k2", null, 0)).kind, "unavailable");
  },
);

test(
  "etcd store: a dropped session's locks go after its release timeout (0: at once)",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    await using pair = await servers(etcd);
    const { a, b } = pair;
    const s = await a.createSession();
    await a.setReleaseTimeout(s, 1000);
    assert.ok(acquired(await a.lock(s, "k", null, 0)));
    await a.disconnect(s);
    const w = await b.createSession();
    assert.ok(acquired(await b.lock(w, "k", null, 60_000)), "granted once the timeout passed");
    const late = await b.createSession();
    assert.equal((await b.resume(late, s.secret)).result, "unknown", "the session is gone");

    const z = await a.createSession();
    await a.setReleaseTimeout(z, 0);
    assert.ok(acquired(await a.lock(z, "z", null, 0)));
    await a.disconnect(z);
    assert.ok(acquired(await b.lock(w, "z", null, 0)), "release timeout 0: gone at once");
    assert.deepEqual(await b.stats(), { clients: 2, locks: 2 });
  },
);

test("etcd store: fence tokens grow across grants and servers", SLOW, async () => {
  await using etcd = await startEtcd();
  await using pair = await servers(etcd);
  const { a, b } = pair;
  const sa = await a.createSession();
  const sb = await b.createSession();
  const tokens: number[] = [];
  for (let i = 0; i < 3; i++) {
    for (const [store, s] of [[a, sa], [b, sb]] as const) {
      assert.ok(acquired(await store.lock(s, "f", null, 10_000)));
      tokens.push((await store.fence(s, "f"))!);
      assert.equal(await store.fence(s, "other"), null);
      await store.unlock(s, "f");
    }
  }
  for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, `${tokens}`);
  assert.equal(await a.fence(sa, "f"), null, "not held");
});

test(
  "etcd store: fence tokens keep growing across a restart of every server, and of etcd",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    const token = async () => {
      const store = await EtcdStore.connect({ endpoints: etcd.endpoints });
      try {
        const s = await store.createSession();
        assert.ok(acquired(await store.lock(s, "f", null, 10_000)));
        const t = (await store.fence(s, "f"))!;
        await store.unlock(s, "f");
        return t;
      } finally {
        await store.close();
      }
    };
    // Each token from a server started afresh (nothing of the last one's memory is left).
    const tokens = [await token(), await token()];
    await etcd.kill(0);
    await etcd.restart(0);
    tokens.push(await token());
    for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, `${tokens}`);
  },
);

test(
  "etcd store: a killed server's sessions lose their locks after their release timeout",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    await using pair = await servers(etcd);
    const { a, b } = pair;
    const s = await a.createSession();
    await a.setReleaseTimeout(s, 1000);
    assert.ok(acquired(await a.lock(s, "k", null, 0)));
    const keep = await b.createSession();
    assert.ok(acquired(await b.lock(keep, "mine", null, 0)));
    await a.abandon(); // as if killed: no more keepalives, nothing written
    const w = await b.createSession();
    assert.ok(acquired(await b.lock(w, "k", null, 60_000)), "granted once the lease ran out");
    assert.equal(
      (await b.lock(w, "mine", null, 0)).kind,
      "unavailable",
      "B's own session untouched",
    );
    const late = await b.createSession();
    assert.equal((await b.resume(late, s.secret)).result, "unknown");
  },
);

test(
  "etcd store: without a quorum nothing is granted and the error is reported; it resumes",
  SLOW,
  async () => {
    await using etcd = await startEtcd(3);
    await using pair = await servers(etcd, { timeoutMs: 1000 });
    const { a } = pair;
    const s = await a.createSession();
    assert.ok(acquired(await a.lock(s, "before", null, 0)));
    await etcd.kill(1);
    await etcd.kill(2);
    await assert.rejects(a.lock(s, "k", null, 0), StoreUnavailableError);
    await assert.rejects(a.stats(), StoreUnavailableError);
    await etcd.restart(1);
    await until(
      async () => {
        try {
          return acquired(await a.lock(s, "k", null, 0));
        } catch (e) {
          if (e instanceof StoreUnavailableError) return false;
          throw e;
        }
      },
      "a grant once the quorum is back",
      30_000,
    );
    const t = await a.stats();
    assert.equal(t.clients, 1);
    assert.ok(t.locks === 2, `locks ${t.locks}`);
  },
);

test(
  "etcd store: value locks are shared by one value across servers, queued FIFO",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    await using pair = await servers(etcd);
    const { a, b } = pair;
    const [s1, s3] = [await a.createSession(), await a.createSession()];
    const [s2, s4] = [await b.createSession(), await b.createSession()];
    assert.ok(acquired(await a.lock(s1, "v", "read", 0)));
    assert.ok(acquired(await b.lock(s2, "v", "read", 0)), "same value: shared");
    assert.ok(acquired(await b.lock(s2, "v", "read", 0)), "re-entrant");
    assert.deepEqual(await a.lock(s3, "v", "write", 0), {
      kind: "unavailable",
      holders: [s1.id, s2.id],
      value: "read",
    });
    assert.deepEqual(await a.lock(s3, "v", null, 0), { kind: "conflict" }, "other mode");
    assert.deepEqual(await a.lock(s1, "x", null, 0), { kind: "acquired" });
    assert.deepEqual(await b.lock(s2, "x", "read", 0), { kind: "conflict" });
    assert.deepEqual(await b.stats(), { clients: 4, locks: 2 });
    assert.deepEqual((await b.debug()).locks.find((l) => l.key === "v"), {
      key: "v",
      holders: [s1.id, s2.id],
      value: "read",
    });
    const order: string[] = [];
    const w3 = a.lock(s3, "v", "write", 60_000).then((r) => {
      assert.ok(acquired(r));
      order.push("s3");
    });
    await until(async () => (await a.debug()).requests.length === 1, "s3 queued", 10_000);
    // s4 wants the value held now, but s3 is queued first: s4 queues behind it.
    const w4 = b.lock(s4, "v", "read", 60_000).then((r) => {
      assert.ok(acquired(r));
      order.push("s4");
    });
    await until(async () => (await a.debug()).requests.length === 2, "s4 queued", 10_000);
    assert.deepEqual(await a.unlock(s1, "v"), { kind: "released" });
    assert.deepEqual(await b.unlock(s4, "v"), { kind: "not_yours", holders: [s2.id] });
    await b.unlockAll(s2);
    await w3;
    assert.deepEqual(order, ["s3"]);
    assert.equal(await a.fence(s3, "v") !== null, true);
    assert.deepEqual(await a.unlock(s3, "v"), { kind: "released" });
    await w4;
    assert.deepEqual(order, ["s3", "s4"]);
    // A resume on the other server keeps the value lock.
    await b.disconnect(s4);
    const fresh = await a.createSession();
    const { result, session } = await a.resume(fresh, s4.secret);
    assert.equal(result, "resumed");
    assert.equal(session.values.get("v"), "read");
    assert.deepEqual(await a.unlock(session, "v"), { kind: "released" });
    assert.deepEqual(await a.stats(), { clients: 4, locks: 1 });
  },
);

test(
  "etcd store: deadlocks are detected across servers (one answer when both close it at once)",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    await using pair = await servers(etcd);
    const { a, b } = pair;
    const s1 = await a.createSession();
    const s2 = await b.createSession();
    assert.ok(acquired(await a.lock(s1, "k1", null, 0)));
    assert.ok(acquired(await b.lock(s2, "k2", null, 0)));
    const w1 = a.lock(s1, "k2", null, 60_000);
    await until(async () => (await b.debug()).requests.length === 1, "s1 queued", 10_000);
    const path = `#${s2.id} => k1 = #${s1.id} => k2 = #${s2.id}`;
    assert.deepEqual(await b.lock(s2, "k1", null, 0), { kind: "deadlock", path });
    assert.deepEqual(await b.lock(s2, "k1", null, 60_000), { kind: "deadlock", path });
    assert.equal((await b.debug()).requests.length, 1, "the deadlocked wait is withdrawn");
    assert.deepEqual(await b.unlock(s2, "k2"), { kind: "released" });
    assert.ok(acquired(await w1));
    await a.unlockAll(s1);

    // Both close the cycle at once, on two servers: exactly one is told.
    assert.ok(acquired(await a.lock(s1, "x1", null, 0)));
    assert.ok(acquired(await b.lock(s2, "x2", null, 0)));
    const results: [string, LockResult][] = [];
    const p1 = a.lock(s1, "x2", null, 60_000).then((r) => results.push(["s1", r]));
    const p2 = b.lock(s2, "x1", null, 60_000).then((r) => results.push(["s2", r]));
    await until(() => results.length === 1, "one answer", 20_000);
    const [who, result] = results[0]!;
    assert.equal(result.kind, "deadlock");
    const [store, session] = who === "s1" ? [a, s1] : [b, s2];
    await store.unlockAll(session);
    await Promise.all([p1, p2]);
    assert.equal(results[1]![1].kind, "acquired", "the other one is granted");
  },
);

test("etcd store: one member of three killed: a queued waiter is still served", SLOW, async () => {
  await using etcd = await startEtcd(3);
  await using pair = await servers(etcd);
  const { a, b } = pair;
  const s1 = await a.createSession();
  const s2 = await b.createSession();
  assert.ok(acquired(await a.lock(s1, "k", null, 0)));
  const waiting = b.lock(s2, "k", null, 120_000);
  await until(async () => (await a.debug()).requests.length === 1, "s2 queued", 10_000);
  await etcd.kill(0); // the member both servers talk to first
  // A call may fail while the cluster elects a leader; none is granted wrongly, and it goes on.
  await until(
    async () => {
      try {
        // "released", or (an earlier try was applied though its answer was lost) k is s2's now.
        return (await a.unlock(s1, "k")).kind !== "not_locked";
      } catch (e) {
        if (e instanceof StoreUnavailableError) return false;
        throw e;
      }
    },
    "the unlock through a surviving member",
    30_000,
  );
  assert.ok(acquired(await waiting), "the waiter on the other server was granted");
  assert.equal((await a.lock(s1, "k", null, 0)).kind, "unavailable");
});

/** The `h/KEY` record of `key` in etcd as the store wrote it, or null. */
async function holdRecord(
  store: EtcdStore,
  key: string,
): Promise<{ create: number; mod: number } | null> {
  const r = await store.gateway.call("/kv/range", { key: btoa(store.prefix + "h/" + key) });
  const kv = (r.kvs as { create_revision: string; mod_revision: string }[] | undefined)?.[0];
  return kv === undefined
    ? null
    : { create: Number(kv.create_revision), mod: Number(kv.mod_revision) };
}

test(
  "etcd store: an unlock hands the key to the oldest exclusive waiter in its own transaction",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    await using pair = await servers(etcd);
    const { a, b } = pair;
    const holder = await a.createSession();
    const waiter = await b.createSession();
    // The unlocking server learns of the waiter from its watch; until it has, an unlock frees the
    // key and the waiter's own server grants it (two transactions). Either way the waiter gets it;
    // at least one of a few rounds must be the one-transaction hand-off, seen in etcd as the hold
    // record overwritten (same create revision, the waiter's token as its mod revision).
    let oneTxn = 0;
    for (let round = 0; round < 5 && oneTxn === 0; round++) {
      assert.ok(acquired(await a.lock(holder, "k", null, 0)));
      const before = await holdRecord(a, "k");
      const heldToken = await a.fence(holder, "k");
      assert.equal(heldToken, before!.create);
      const waiting = b.lock(waiter, "k", null, 60_000);
      await until(async () => (await a.debug()).requests.length === 1, "queued", 10_000);
      await new Promise((r) => setTimeout(r, 200)); // let a's watch show the waiter
      assert.deepEqual(await a.unlock(holder, "k"), { kind: "released" });
      assert.ok(acquired(await waiting));
      const after = await holdRecord(a, "k");
      const token = await b.fence(waiter, "k");
      assert.ok(token !== null && token > heldToken!, "the token grows with the hand-off");
      assert.equal(after!.mod, token, "the waiter's token is its grant's revision");
      if (after!.create === before!.create) oneTxn++;
      assert.deepEqual((await a.debug()).locks, [{ key: "k", holders: [waiter.id], value: null }]);
      assert.deepEqual((await a.debug()).requests, []);
      assert.equal((await a.lock(holder, "k", null, 0)).kind, "unavailable");
      assert.deepEqual(await b.unlock(waiter, "k"), { kind: "released" });
    }
    assert.ok(oneTxn > 0, "no round handed the key over in the unlock's transaction");
  },
);

test(
  "etcd store: a hand-off racing the waiter's withdrawal: the key is the waiter's or free, never both",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    await using pair = await servers(etcd);
    const { a, b } = pair;
    const holder = await a.createSession();
    const waiter = await b.createSession();
    const next = await a.createSession();
    // Every moment from "withdrawn before the unlock" to "withdrawn after the hand-off".
    for (const delay of [0, 0, 1, 1, 2, 3, 4, 6, 8, 12]) {
      assert.ok(acquired(await a.lock(holder, "k", null, 0)));
      const waiting = b.lock(waiter, "k", null, 60_000);
      await until(async () => (await a.debug()).requests.length === 1, "waiter queued", 10_000);
      const later = a.lock(next, "k", null, 60_000);
      await until(async () => (await a.debug()).requests.length === 2, "next queued", 10_000);
      await new Promise((r) => setTimeout(r, 100)); // a's watch shows both
      const cancel = new Promise((r) => setTimeout(r, delay)).then(() => b.cancelWait(waiter));
      const [unlocked, result] = await Promise.all([a.unlock(holder, "k"), waiting, cancel]);
      assert.deepEqual(unlocked, { kind: "released" });
      if (result.kind === "acquired") {
        // Told so, it holds it: the next waiter is still waiting.
        assert.deepEqual((await a.debug()).locks, [{
          key: "k",
          holders: [waiter.id],
          value: null,
        }]);
        assert.deepEqual(await b.unlock(waiter, "k"), { kind: "released" });
      } else {
        assert.equal(result.kind, "unavailable");
        assert.equal(waiter.held.has("k"), false);
      }
      assert.ok(acquired(await later), "the next waiter gets the key");
      assert.deepEqual((await a.debug()).locks, [{ key: "k", holders: [next.id], value: null }]);
      assert.deepEqual(await b.unlock(waiter, "k"), { kind: "not_yours", holders: [next.id] });
      assert.deepEqual(await a.unlock(next, "k"), { kind: "released" });
      assert.deepEqual(await a.debug().then((d) => [d.locks, d.requests]), [[], []]);
    }
  },
);

test(
  "etcd store: with a lagging watch, a wait is never told acquired while another session holds the key",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    // Fault injection: every watch frame of server A arrives 500 ms late (a slow watch, or one
    // that restarted and replays what it missed).
    const watch = EtcdGateway.prototype.watch;
    EtcdGateway.prototype.watch = function (create, signal, onFrame) {
      return watch.call(this, create, signal, (r) => void setTimeout(() => onFrame(r), 500));
    };
    let a: EtcdStore;
    try {
      a = await EtcdStore.connect({ endpoints: etcd.endpoints });
    } finally {
      EtcdGateway.prototype.watch = watch;
    }
    await using _a = { [Symbol.asyncDispose]: () => a.close() };
    await using b = await EtcdStore.connect({ endpoints: etcd.endpoints }).then((b) =>
      Object.assign(b, { [Symbol.asyncDispose]: () => b.close() })
    );
    const s = await a.createSession();
    const x = await b.createSession();
    assert.ok(acquired(await a.lock(s, "k", null, 0)));
    assert.deepEqual(await a.unlock(s, "k"), { kind: "released" });
    assert.ok(acquired(await b.lock(x, "k", null, 0)));
    // S waits while X holds k; A's watch now shows S's earlier grant and release.
    const r = await a.lock(s, "k", null, 2000);
    assert.deepEqual(r, { kind: "unavailable", holders: [x.id], value: null });
    assert.equal(await a.fence(s, "k"), null);
    assert.deepEqual((await a.debug()).locks, [{ key: "k", holders: [x.id], value: null }]);
    assert.deepEqual((await a.debug()).requests, [], "no waiter left behind");
  },
);

test(
  "etcd store: an unlock whose hand-offs all fail (each waiter withdraws just then) still releases",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    await using pair = await servers(etcd);
    const { a, b } = pair;
    const u = await a.createSession();
    const w1 = await b.createSession();
    const w2 = await b.createSession();
    assert.ok(acquired(await a.lock(u, "k", null, 0)));
    const p1 = b.lock(w1, "k", null, 60_000);
    await until(async () => (await a.debug()).requests.length === 1, "w1 queued", 10_000);
    const p2 = b.lock(w2, "k", null, 60_000);
    await until(async () => (await a.debug()).requests.length === 2, "w2 queued", 10_000);
    await new Promise((r) => setTimeout(r, 300)); // a's watch shows both
    // Fault injection at the seam: right before each hand-off transaction of A (the one that
    // names a waiter), that waiter withdraws (its deadline or its client's cancel falls then).
    const call = a.gateway.call.bind(a.gateway);
    const withdrawn: LockResult[] = [];
    a.gateway.call = async (path, body, timeoutMs) => {
      const success = (body.success ?? []) as Json[];
      if (path === "/kv/txn" && success.length > 2 && success[0]!.request_put !== undefined) {
        const [who, pending] = withdrawn.length === 0 ? [w1, p1] : [w2, p2];
        b.cancelWait(who);
        withdrawn.push(await pending);
      }
      return await call(path, body, timeoutMs);
    };
    assert.deepEqual(await a.unlock(u, "k"), { kind: "released" });
    a.gateway.call = call;
    assert.equal(withdrawn.length, 2, "both hand-off attempts were made");
    assert.deepEqual(withdrawn.map((r) => r.kind), ["unavailable", "unavailable"]);
    assert.deepEqual(await a.debug().then((d) => [d.locks, d.requests]), [[], []]);
    const z = await b.createSession();
    assert.ok(acquired(await b.lock(z, "k", null, 0)), "the key is free");
  },
);

test(
  "etcd store: a set_timeout whose session write gets no answer loses none of the session's locks",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    await using pair = await servers(etcd);
    const { a, b } = pair;
    const s = await a.createSession();
    await a.setReleaseTimeout(s, 1000); // a 2 s lease
    assert.ok(acquired(await a.lock(s, "k", null, 0)));
    // Fault injection at the seam: the write of the session record (on the new, 3 s lease)
    // times out, unapplied.
    const call = a.gateway.call.bind(a.gateway);
    a.gateway.call = async (path, body, timeoutMs) => {
      const put = ((body.success ?? []) as Json[])[0]?.request_put as Json | undefined;
      if (path === "/kv/txn" && put !== undefined && atob(String(put.key)).includes("/s/")) {
        throw new StoreUnavailableError("injected: etcd timed out");
      }
      return await call(path, body, timeoutMs);
    };
    await assert.rejects(a.setReleaseTimeout(s, 2000), StoreUnavailableError);
    a.gateway.call = call;
    await new Promise((r) => setTimeout(r, 4000)); // past the old lease's TTL
    assert.equal(s.lost, false);
    const token = await a.fence(s, "k");
    assert.ok(token !== null, "the lock is still held, with its token");
    const x = await b.createSession();
    assert.deepEqual(await b.lock(x, "k", null, 0), {
      kind: "unavailable",
      holders: [s.id],
      value: null,
    });
  },
);

test(
  "etcd store: a waiter key left behind by a withdrawal etcd did not answer goes with a resume elsewhere",
  SLOW,
  async () => {
    await using etcd = await startEtcd();
    await using pair = await servers(etcd);
    const { a, b } = pair;
    const u = await b.createSession();
    const n = await a.createSession();
    assert.ok(acquired(await b.lock(u, "k", null, 0)));
    const waiting = a.lock(n, "k", null, 60_000);
    await until(async () => (await a.debug()).requests.length === 1, "queued", 10_000);
    await new Promise((r) => setTimeout(r, 300)); // b's watch shows the waiter
    // Fault injection at the seam: A's withdrawals of that waiter get no answer from etcd.
    const me = btoa(a.prefix + "w/1:k/" + n.secret);
    let down = true;
    const call = a.gateway.call.bind(a.gateway);
    a.gateway.call = async (path, body, timeoutMs) => {
      const compare = (body.compare ?? []) as Json[];
      if (down && path === "/kv/txn" && compare[0]?.key === me) {
        throw new StoreUnavailableError("injected: etcd timed out");
      }
      return await call(path, body, timeoutMs);
    };
    a.cancelWait(n);
    assert.equal((await waiting).kind, "unavailable");
    await a.disconnect(n);
    const fresh = await b.createSession();
    const { result, session } = await b.resume(fresh, n.secret);
    assert.equal(result, "resumed");
    assert.deepEqual([...session.held.keys()], []);
    assert.deepEqual(await b.unlock(u, "k"), { kind: "released" });
    down = false;
    const x = await b.createSession();
    // The key is not handed to the resumed session, which does not wait for it: it is free.
    await until(async () => acquired(await b.lock(x, "k", null, 0)), "k free", 10_000);
    assert.deepEqual((await b.debug()).locks, [{ key: "k", holders: [x.id], value: null }]);
    assert.deepEqual((await b.debug()).requests, []);
  },
);
