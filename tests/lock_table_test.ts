/**
 * Unit tests of the lock table, through its API only (no sockets): FIFO
 * waiters, wait deadlines, withdrawn waits, value locks, deadlock paths,
 * resume, release timeouts, unlock rules and shutdown.
 *
 * Timer-driven changes are awaited by polling with a generous bound; no test
 * asserts how long anything took. Every test closes its table so no timer is
 * left behind.
 *
 * @module
 */

import { test } from "node:test";
import { until } from "./support/wait.ts";
import assert from "node:assert/strict";
import {
  type LockResult,
  LockTable,
  type LockTableOptions,
  type Session,
} from "../src/server/lock_table.ts";

const WAIT = 10_000;
const ACQUIRED: LockResult = { kind: "acquired" };

function unavailable(holders: readonly string[], value: string | null = null): LockResult {
  return { kind: "unavailable", holders, value };
}

/** A pending lock request whose outcome can be looked at without awaiting it. */
interface Pending {
  readonly promise: Promise<LockResult>;
  /** The outcome once settled (after the microtasks have run), else undefined. */
  readonly result: () => LockResult | undefined;
}

/** Asserts that `result` is a queued wait and starts tracking it. */
function queued(result: LockResult | Promise<LockResult>): Pending {
  assert.ok(result instanceof Promise, `expected a queued wait, got ${JSON.stringify(result)}`);
  let settled: LockResult | undefined;
  result.then((r) => settled = r);
  return { promise: result, result: () => settled };
}

/** Asserts that `result` is an immediate answer (not a wait) and returns it. */
function immediate(result: LockResult | Promise<LockResult>): LockResult {
  assert.ok(!(result instanceof Promise), "expected an immediate answer, got a queued wait");
  return result;
}

/** Lets pending promise callbacks run. */
function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Counts the timers started through the global `setTimeout` that are still
 * pending (neither fired nor cleared), until disposed.
 */
function trackTimers(): { readonly live: Set<unknown> } & Disposable {
  const g = globalThis as unknown as {
    setTimeout: (fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => unknown;
    clearTimeout: (id: unknown) => void;
  };
  const realSet = g.setTimeout;
  const realClear = g.clearTimeout;
  const live = new Set<unknown>();
  g.setTimeout = (fn, ms, ...args) => {
    const id: unknown = realSet(() => {
      live.delete(id);
      fn(...args);
    }, ms);
    live.add(id);
    return id;
  };
  g.clearTimeout = (id) => {
    live.delete(id);
    realClear(id);
  };
  return {
    live,
    [Symbol.dispose]() {
      g.setTimeout = realSet;
      g.clearTimeout = realClear;
    },
  };
}

function table(options: LockTableOptions = {}): LockTable {
  return new LockTable({ sequentialIds: true, ...options });
}

function sessions(t: LockTable, n: number): Session[] {
  return Array.from({ length: n }, () => t.createSession());
}

function holderIds(t: LockTable, key: string): string[] {
  return [...(t.keys.get(key)?.holders ?? [])].map((s) => s.id);
}

function queueIds(t: LockTable, key: string): string[] {
  return (t.keys.get(key)?.queue ?? []).map((w) => w.session.id);
}

test("LockTable.createSession() hands out ids 1, 2, 3... with sequentialIds", () => {
  const t = table();
  assert.deepEqual(sessions(t, 3).map((s) => s.id), ["1", "2", "3"]);
  t.close();
});

test("LockTable.createSession() hands out distinct unguessable ids by default", () => {
  const t = new LockTable();
  const ids = sessions(t, 50).map((s) => s.secret);
  assert.equal(new Set(ids).size, 50);
  for (const id of ids) {
    assert.doesNotMatch(id, /^[0-9]+$/);
    assert.doesNotMatch(id, /[\s]/);
    assert.ok(id.length >= 12, `id ${id} is short`);
  }
  t.close();
});

test("LockTable.lock() grants a free key, is re-entrant, and one unlock releases it", () => {
  const t = table();
  const [a, b] = sessions(t, 2) as [Session, Session];
  assert.deepEqual(t.lock(a, "k", null, 0), ACQUIRED);
  assert.deepEqual(t.lock(a, "k", null, 0), ACQUIRED);
  assert.deepEqual(t.lock(a, "k", null, WAIT), ACQUIRED);
  assert.deepEqual(t.lock(b, "k", null, 0), unavailable(["1"]));
  assert.deepEqual(t.unlock(a, "k"), { kind: "released" });
  assert.deepEqual(t.unlock(a, "k"), { kind: "not_locked" });
  assert.deepEqual(t.lock(b, "k", null, 0), ACQUIRED);
  assert.equal(t.lockCount, 1);
  t.close();
});

test("LockTable.lock() serves 3 waiters first come, first served, one per release", async () => {
  const t = table();
  const [a, b, c, d] = sessions(t, 4) as [Session, Session, Session, Session];
  assert.deepEqual(t.lock(a, "k", null, 0), ACQUIRED);
  const pb = queued(t.lock(b, "k", null, WAIT));
  const pc = queued(t.lock(c, "k", null, WAIT));
  const pd = queued(t.lock(d, "k", null, WAIT));
  assert.deepEqual(queueIds(t, "k"), ["2", "3", "4"]);

  t.unlock(a, "k");
  assert.deepEqual(holderIds(t, "k"), ["2"]);
  assert.deepEqual(await pb.promise, ACQUIRED);
  await tick();
  assert.equal(pc.result(), undefined);
  assert.equal(pd.result(), undefined);
  assert.deepEqual(queueIds(t, "k"), ["3", "4"]);

  t.unlock(b, "k");
  assert.deepEqual(holderIds(t, "k"), ["3"]);
  assert.deepEqual(await pc.promise, ACQUIRED);
  await tick();
  assert.equal(pd.result(), undefined);

  t.unlock(c, "k");
  assert.deepEqual(holderIds(t, "k"), ["4"]);
  assert.deepEqual(await pd.promise, ACQUIRED);
  assert.equal(d.waiting, null);
  assert.deepEqual(queueIds(t, "k"), []);
  t.close();
});

test("LockTable.lock() serves waiters in arrival order across 5 waiters and mixed releases", async () => {
  const t = table();
  const all = sessions(t, 6);
  const [holder, ...waiters] = all as [Session, ...Session[]];
  t.lock(holder, "k", null, 0);
  const pending = waiters.map((w) => queued(t.lock(w, "k", null, WAIT)));
  const order: string[] = [];
  pending.forEach((p, i) => p.promise.then(() => order.push(waiters[i]!.id)));
  // Release by unlock, unlockAll, dispose and disconnect (timeout 0) in turn.
  t.unlock(holder, "k");
  await tick();
  t.unlockAll(waiters[0]!);
  await tick();
  t.dispose(waiters[1]!);
  await tick();
  waiters[2]!.releaseTimeout = 0;
  t.disconnect(waiters[2]!);
  await tick();
  t.unlock(waiters[3]!, "k");
  await tick();
  assert.deepEqual(order, ["2", "3", "4", "5", "6"]);
  assert.deepEqual(holderIds(t, "k"), ["6"]);
  t.close();
});

test("LockTable.lock() answers a waiter unavailable at its deadline and drops it from the queue", async () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  t.lock(a, "k", null, 0);
  const pb = queued(t.lock(b, "k", null, 50));
  const pc = queued(t.lock(c, "k", null, WAIT));
  await until(() => pb.result() !== undefined, "b's deadline");
  assert.deepEqual(pb.result(), unavailable(["1"]));
  assert.equal(b.waiting, null);
  assert.deepEqual(queueIds(t, "k"), ["3"]);
  assert.equal(pc.result(), undefined);
  // No dead entry is left: the release goes straight to c.
  t.unlock(a, "k");
  assert.deepEqual(holderIds(t, "k"), ["3"]);
  assert.deepEqual(await pc.promise, ACQUIRED);
  t.close();
});

test("LockTable.lock() lets the next waiter be first after the head waiter's deadline", async () => {
  const t = table();
  const [a, b, c, d] = sessions(t, 4) as [Session, Session, Session, Session];
  t.lock(a, "k", null, 0);
  const pb = queued(t.lock(b, "k", null, 30));
  const pc = queued(t.lock(c, "k", null, 60));
  const pd = queued(t.lock(d, "k", null, WAIT));
  await until(() => pb.result() !== undefined && pc.result() !== undefined, "b and c deadlines");
  assert.deepEqual(pb.result(), unavailable(["1"]));
  assert.deepEqual(pc.result(), unavailable(["1"]));
  assert.deepEqual(queueIds(t, "k"), ["4"]);
  t.unlock(a, "k");
  assert.deepEqual(await pd.promise, ACQUIRED);
  // A waiter that timed out can ask again and queues behind nobody stale.
  const pb2 = queued(t.lock(b, "k", null, WAIT));
  t.unlock(d, "k");
  assert.deepEqual(await pb2.promise, ACQUIRED);
  t.close();
});

test("LockTable.lock() a waiter whose deadline passes after the key was freed has its grant already", async () => {
  const t = table();
  const [a, b] = sessions(t, 2) as [Session, Session];
  t.lock(a, "k", null, 0);
  const pb = queued(t.lock(b, "k", null, 40));
  t.unlock(a, "k");
  assert.deepEqual(await pb.promise, ACQUIRED);
  // The deadline timer was cleared: the lock stays b's past the deadline.
  await new Promise((resolve) => setTimeout(resolve, 80));
  assert.deepEqual(holderIds(t, "k"), ["2"]);
  assert.deepEqual(t.lock(a, "k", null, 0), unavailable(["2"]));
  t.close();
});

test("LockTable.lock() with a wait past the timer limit keeps waiting instead of answering at once", async () => {
  const t = table();
  const [a, b] = sessions(t, 2) as [Session, Session];
  t.lock(a, "k", null, 0);
  const pb = queued(t.lock(b, "k", null, 2_147_484_000));
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(pb.result(), undefined);
  t.unlock(a, "k");
  assert.deepEqual(await pb.promise, ACQUIRED);
  t.close();
});

test("LockTable.cancelWait() withdraws a waiter: it gets unavailable and the next waiter is first", async () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  t.lock(a, "k", null, 0);
  const pb = queued(t.lock(b, "k", null, WAIT));
  const pc = queued(t.lock(c, "k", null, WAIT));
  t.cancelWait(b);
  assert.deepEqual(await pb.promise, unavailable(["1"]));
  assert.equal(b.waiting, null);
  assert.deepEqual(queueIds(t, "k"), ["3"]);
  t.cancelWait(b); // nothing to withdraw: a no-op
  t.unlock(a, "k");
  assert.deepEqual(holderIds(t, "k"), ["3"]);
  assert.deepEqual(await pc.promise, ACQUIRED);
  assert.equal(b.held.size, 0);
  t.close();
});

test("LockTable.disconnect() of a waiter withdraws its wait; the lock never reaches it", async () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  t.lock(a, "k", null, 0);
  const pb = queued(t.lock(b, "k", null, WAIT));
  t.disconnect(b); // default release timeout: the session lives on
  assert.deepEqual(await pb.promise, unavailable(["1"]));
  assert.equal(b.connected, false);
  assert.ok(t.sessions.has(b.id));
  assert.deepEqual(queueIds(t, "k"), []);
  t.unlock(a, "k");
  // The key is free (not handed to the departed b): c's plain lock gets it.
  assert.deepEqual(t.lock(c, "k", null, 0), ACQUIRED);
  assert.equal(b.held.size, 0);
  t.close();
});

test("LockTable.disconnect() of a middle waiter lets the release reach the waiter behind it", async () => {
  const t = table();
  const [a, b, c, d] = sessions(t, 4) as [Session, Session, Session, Session];
  t.lock(a, "k", null, 0);
  const pb = queued(t.lock(b, "k", null, WAIT));
  const pc = queued(t.lock(c, "k", null, WAIT));
  const pd = queued(t.lock(d, "k", null, WAIT));
  t.disconnect(c);
  assert.deepEqual(await pc.promise, unavailable(["1"]));
  assert.deepEqual(queueIds(t, "k"), ["2", "4"]);
  t.unlock(a, "k");
  assert.deepEqual(await pb.promise, ACQUIRED);
  t.unlock(b, "k");
  assert.deepEqual(await pd.promise, ACQUIRED);
  assert.deepEqual(holderIds(t, "k"), ["4"]);
  t.close();
});

test("LockTable.lock() grants a value lock to every session asking for the same value", () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  assert.deepEqual(t.lock(a, "v", "red", 0), ACQUIRED);
  assert.deepEqual(t.lock(b, "v", "red", 0), ACQUIRED);
  assert.deepEqual(t.lock(c, "v", "blue", 0), unavailable(["1", "2"], "red"));
  assert.deepEqual(t.lock(a, "v", "red", WAIT), ACQUIRED, "re-entrant value lock");
  assert.equal(t.lockCount, 1);
  assert.deepEqual(t.unlock(a, "v"), { kind: "released" });
  assert.deepEqual(holderIds(t, "v"), ["2"]);
  assert.deepEqual(t.lock(c, "v", "blue", 0), unavailable(["2"], "red"));
  t.unlock(b, "v");
  assert.deepEqual(t.lock(c, "v", "blue", 0), ACQUIRED);
  t.close();
});

test("LockTable.lock() answers conflict between exclusive and value locks, for holders too", () => {
  const t = table();
  const [a, b] = sessions(t, 2) as [Session, Session];
  t.lock(a, "x", null, 0);
  t.lock(a, "v", "red", 0);
  assert.deepEqual(immediate(t.lock(b, "x", "red", WAIT)), { kind: "conflict" });
  assert.deepEqual(immediate(t.lock(b, "v", null, WAIT)), { kind: "conflict" });
  assert.deepEqual(immediate(t.lock(a, "x", "red", WAIT)), { kind: "conflict" });
  assert.deepEqual(immediate(t.lock(a, "v", null, WAIT)), { kind: "conflict" });
  assert.equal(b.waiting, null);
  assert.deepEqual(queueIds(t, "x"), []);
  t.close();
});

test("LockTable.lock() answers a value holder asking for another value unavailable at once", () => {
  const t = table();
  const [a, b] = sessions(t, 2) as [Session, Session];
  t.lock(a, "v", "red", 0);
  t.lock(b, "v", "red", 0);
  assert.deepEqual(immediate(t.lock(a, "v", "green", WAIT)), unavailable(["1", "2"], "red"));
  assert.equal(a.waiting, null);
  assert.deepEqual(queueIds(t, "v"), []);
  t.close();
});

test("LockTable.unlock() hands a value lock to all waiters for the head's value, even non-adjacent ones", async () => {
  const t = table();
  const [a, b, c, d, e, f] = sessions(t, 6) as [
    Session,
    Session,
    Session,
    Session,
    Session,
    Session,
  ];
  t.lock(a, "v", "red", 0);
  const pb = queued(t.lock(b, "v", "blue", WAIT));
  const pc = queued(t.lock(c, "v", "green", WAIT));
  const pd = queued(t.lock(d, "v", "blue", WAIT));
  const pe = queued(t.lock(e, "v", "green", WAIT));
  const pf = queued(t.lock(f, "v", "blue", WAIT));
  assert.deepEqual(queueIds(t, "v"), ["2", "3", "4", "5", "6"]);
  t.unlock(a, "v");
  assert.deepEqual(holderIds(t, "v"), ["2", "4", "6"]);
  assert.equal(t.keys.get("v")?.value, "blue");
  assert.deepEqual(await pb.promise, ACQUIRED);
  assert.deepEqual(await pd.promise, ACQUIRED);
  assert.deepEqual(await pf.promise, ACQUIRED);
  assert.deepEqual(queueIds(t, "v"), ["3", "5"]);
  await tick();
  assert.equal(pc.result(), undefined);
  assert.equal(pe.result(), undefined);

  t.unlock(b, "v");
  t.unlock(d, "v");
  await tick();
  assert.equal(pc.result(), undefined, "green waits until every blue holder is gone");
  t.unlock(f, "v");
  assert.deepEqual(holderIds(t, "v"), ["3", "5"]);
  assert.equal(t.keys.get("v")?.value, "green");
  assert.deepEqual(await pc.promise, ACQUIRED);
  assert.deepEqual(await pe.promise, ACQUIRED);
  assert.deepEqual(queueIds(t, "v"), []);
  t.close();
});

test("LockTable.unlock() of a value lock hands an emptied key to an exclusive request only when free", async () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  t.lock(a, "v", "red", 0);
  const pb = queued(t.lock(b, "v", "blue", WAIT));
  t.unlock(a, "v");
  assert.deepEqual(await pb.promise, ACQUIRED);
  assert.deepEqual(immediate(t.lock(c, "v", null, WAIT)), { kind: "conflict" });
  t.unlock(b, "v");
  assert.equal(t.keys.has("v"), false, "a key nobody uses is forgotten");
  assert.deepEqual(t.lock(c, "v", null, 0), ACQUIRED);
  assert.equal(t.keys.get("v")?.value, null);
  t.close();
});

test("LockTable.lock() queues a same-value request behind an earlier waiter instead of jumping it", async () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  t.lock(a, "v", "red", 0);
  const pb = queued(t.lock(b, "v", "blue", WAIT));
  assert.deepEqual(immediate(t.lock(c, "v", "red", 0)), unavailable(["1"], "red"));
  const pc = queued(t.lock(c, "v", "red", WAIT));
  t.unlock(a, "v");
  assert.deepEqual(await pb.promise, ACQUIRED);
  await tick();
  assert.equal(pc.result(), undefined);
  t.unlock(b, "v");
  assert.deepEqual(await pc.promise, ACQUIRED);
  t.close();
});

test("LockTable.lock() grants same-value waiters as soon as a waiter for another value ahead of them times out", async () => {
  const t = table();
  const [a, b, c, d] = sessions(t, 4) as [Session, Session, Session, Session];
  t.lock(a, "v", "red", 0);
  const pb = queued(t.lock(b, "v", "blue", 40));
  const pc = queued(t.lock(c, "v", "red", WAIT));
  const pd = queued(t.lock(d, "v", "red", WAIT));
  const timedOut = await pb.promise;
  assert.equal(timedOut.kind, "unavailable");
  assert.equal(timedOut.kind === "unavailable" && timedOut.value, "red");
  // The blue waiter is gone; red is compatible with the holder.
  await until(() => pc.result() !== undefined, "red waiters granted");
  assert.deepEqual(pc.result(), ACQUIRED);
  assert.deepEqual(await pd.promise, ACQUIRED);
  assert.deepEqual(holderIds(t, "v"), ["1", "3", "4"]);
  t.close();
});

test("LockTable.cancelWait() of a value waiter leaves the other value waiters' group grant intact", async () => {
  const t = table();
  const [a, b, c, d] = sessions(t, 4) as [Session, Session, Session, Session];
  t.lock(a, "v", "red", 0);
  const pb = queued(t.lock(b, "v", "blue", WAIT));
  const pc = queued(t.lock(c, "v", "blue", WAIT));
  const pd = queued(t.lock(d, "v", "blue", WAIT));
  t.cancelWait(c);
  assert.deepEqual(await pc.promise, unavailable(["1"], "red"));
  t.unlock(a, "v");
  assert.deepEqual(await pb.promise, ACQUIRED);
  assert.deepEqual(await pd.promise, ACQUIRED);
  assert.deepEqual(holderIds(t, "v"), ["2", "4"]);
  assert.equal(c.held.size, 0);
  t.close();
});

test("LockTable.cancelWait() of the head value waiter lets the next value's group in", async () => {
  const t = table();
  const [a, b, c, d] = sessions(t, 4) as [Session, Session, Session, Session];
  t.lock(a, "v", "red", 0);
  const pb = queued(t.lock(b, "v", "blue", WAIT));
  const pc = queued(t.lock(c, "v", "green", WAIT));
  const pd = queued(t.lock(d, "v", "green", WAIT));
  t.disconnect(b);
  assert.deepEqual(await pb.promise, unavailable(["1"], "red"));
  t.unlock(a, "v");
  assert.deepEqual(await pc.promise, ACQUIRED);
  assert.deepEqual(await pd.promise, ACQUIRED);
  assert.equal(t.keys.get("v")?.value, "green");
  t.close();
});

/** Builds a cycle of `n` sessions: i holds k{i} and waits for k{i+1}; n has not asked yet. */
function cycle(t: LockTable, n: number, prefix: string): { all: Session[]; waits: Pending[] } {
  const all = sessions(t, n);
  all.forEach((s, i) => assert.deepEqual(t.lock(s, `${prefix}${i + 1}`, null, 0), ACQUIRED));
  const waits = all.slice(0, -1).map((s, i) => queued(t.lock(s, `${prefix}${i + 2}`, null, WAIT)));
  return { all, waits };
}

function expectedPath(n: number, prefix: string): string {
  let path = `#${n}`;
  for (let i = 1; i <= n; i++) path += ` => ${prefix}${i} = #${i}`;
  return path;
}

for (const n of [2, 3, 4, 5]) {
  test(`LockTable.lock() answers a deadlock cycle of ${n} sessions with its exact path`, async () => {
    const t = table();
    const { all, waits } = cycle(t, n, "e");
    const last = all[n - 1]!;
    const path = expectedPath(n, "e");
    assert.deepEqual(immediate(t.lock(last, "e1", null, WAIT)), { kind: "deadlock", path });
    assert.deepEqual(immediate(t.lock(last, "e1", null, 0)), { kind: "deadlock", path });
    assert.equal(last.waiting, null, "a deadlocked request is not queued");
    assert.deepEqual(queueIds(t, "e1"), []);
    // Breaking the cycle lets the waiter on the freed key in.
    t.unlock(last, `e${n}`);
    assert.deepEqual(await waits[n - 2]!.promise, ACQUIRED);
    t.close();
    for (const w of waits) await w.promise;
  });
}

test("LockTable.lock() writes the 3-cycle path as in the deadlock_three transcript", () => {
  const t = table();
  cycle(t, 3, "e");
  const c = t.sessions.get("3")!;
  assert.deepEqual(t.lock(c, "e1", null, 5000), {
    kind: "deadlock",
    path: "#3 => e1 = #1 => e2 = #2 => e3 = #3",
  });
  t.close();
});

test("LockTable.lock() finds a deadlock through the second holder of a value lock", () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  t.lock(a, "v", "red", 0);
  t.lock(b, "v", "red", 0);
  t.lock(c, "x", null, 0);
  queued(t.lock(b, "x", null, WAIT));
  assert.deepEqual(immediate(t.lock(c, "v", "blue", WAIT)), {
    kind: "deadlock",
    path: "#3 => v = #2 => x = #3",
  });
  t.close();
});

test("LockTable.lock() queues normally when a chain of waiters does not lead back", async () => {
  const t = table();
  const [a, b, c, d] = sessions(t, 4) as [Session, Session, Session, Session];
  t.lock(a, "k1", null, 0);
  t.lock(b, "k2", null, 0);
  t.lock(c, "k3", null, 0);
  const pa = queued(t.lock(a, "k2", null, WAIT));
  const pb = queued(t.lock(b, "k3", null, WAIT));
  const pd = queued(t.lock(d, "k1", null, WAIT));
  assert.deepEqual(immediate(t.lock(d, "k3", null, 0)), unavailable(["3"]));
  t.unlock(c, "k3");
  assert.deepEqual(await pb.promise, ACQUIRED);
  t.unlockAll(b);
  assert.deepEqual(await pa.promise, ACQUIRED);
  t.unlockAll(a);
  assert.deepEqual(await pd.promise, ACQUIRED);
  t.close();
});

test("LockTable.lock() with detectDeadlocks false lets a cycle's wait time out as unavailable", async () => {
  const t = table({ detectDeadlocks: false });
  const [a, b] = sessions(t, 2) as [Session, Session];
  t.lock(a, "d1", null, 0);
  t.lock(b, "d2", null, 0);
  const pa = queued(t.lock(a, "d2", null, WAIT));
  assert.deepEqual(immediate(t.lock(b, "d1", null, 0)), unavailable(["1"]));
  const pb = queued(t.lock(b, "d1", null, 50));
  assert.deepEqual(await pb.promise, unavailable(["1"]));
  assert.equal(b.waiting, null);
  t.unlock(b, "d2");
  assert.deepEqual(await pa.promise, ACQUIRED);
  t.close();
});

test("LockTable.resume() answers same, holds_locks, unknown and active", () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  assert.deepEqual(t.resume(a, a.id), { result: "same", session: a });
  assert.deepEqual(t.resume(b, a.id), { result: "active", session: b });
  assert.deepEqual(t.resume(b, "999"), { result: "unknown", session: b });
  t.lock(c, "k", null, 0);
  c.releaseTimeout = 1000;
  a.releaseTimeout = 1000;
  t.disconnect(a);
  assert.deepEqual(t.resume(c, a.id), { result: "holds_locks", session: c });
  assert.deepEqual(t.resume(c, "999"), { result: "holds_locks", session: c });
  assert.equal(a.connected, false, "a refused resume leaves the target alone");
  t.close();
});

test("LockTable.resume() adopts a disconnected session with its locks and forgets the new one", () => {
  const t = table();
  const [a, b, n] = sessions(t, 3) as [Session, Session, Session];
  a.releaseTimeout = 1000;
  t.lock(a, "r", null, 0);
  t.lock(a, "s", "red", 0);
  t.disconnect(a);
  assert.equal(a.connected, false);
  assert.ok(a.expiresAt > 0);
  const { result, session } = t.resume(n, a.id);
  assert.equal(result, "resumed");
  assert.equal(session, a);
  assert.equal(a.connected, true);
  assert.equal(a.expiresAt, 0);
  assert.equal(a.expiry, undefined);
  assert.deepEqual([...a.held.keys()].sort(), ["r", "s"]);
  assert.equal(t.sessions.has(n.id), false);
  assert.deepEqual(t.lock(b, "r", null, 0), unavailable(["1"]));
  assert.deepEqual(t.unlock(a, "r"), { kind: "released" });
  assert.deepEqual(t.lock(b, "r", null, 0), ACQUIRED);
  // Now connected again: another connection cannot take it.
  const m = t.createSession();
  assert.equal(t.resume(m, a.id).result, "active");
  t.close();
});

test("LockTable.resume() of a resumed session keeps its locks past the old release timeout", async () => {
  const t = table();
  const [a, b, n] = sessions(t, 3) as [Session, Session, Session];
  a.releaseTimeout = 50;
  t.lock(a, "r", null, 0);
  t.disconnect(a);
  assert.equal(t.resume(n, a.id).result, "resumed");
  await new Promise((resolve) => setTimeout(resolve, 120));
  assert.ok(t.sessions.has(a.id));
  assert.deepEqual(t.lock(b, "r", null, 0), unavailable(["1"]));
  t.close();
});

test("LockTable.resume() cannot adopt a session whose release timeout has passed", async () => {
  const t = table();
  const [a, b, n] = sessions(t, 3) as [Session, Session, Session];
  a.releaseTimeout = 30;
  t.lock(a, "r", null, 0);
  t.disconnect(a);
  await until(() => !t.sessions.has(a.id), "a's expiry");
  assert.deepEqual(t.resume(n, a.id), { result: "unknown", session: n });
  assert.equal(a.held.size, 0);
  assert.deepEqual(t.lock(b, "r", null, 0), ACQUIRED);
  t.close();
});

test("LockTable.disconnect() keeps locks for the release timeout, then releases them", async () => {
  const t = table();
  const [a, b] = sessions(t, 2) as [Session, Session];
  a.releaseTimeout = 200;
  t.lock(a, "r", null, 0);
  t.lock(a, "s", null, 0);
  t.disconnect(a, Date.now());
  assert.equal(a.connected, false);
  assert.deepEqual(t.lock(b, "r", null, 0), unavailable(["1"]));
  assert.equal(t.lockCount, 2);
  await until(() => !t.sessions.has(a.id), "a's expiry");
  assert.equal(a.held.size, 0);
  assert.equal(t.lockCount, 0);
  assert.deepEqual(t.lock(b, "r", null, 0), ACQUIRED);
  assert.deepEqual(t.lock(b, "s", null, 0), ACQUIRED);
  t.close();
});

test("LockTable.disconnect() hands the locks to waiters when the release timeout passes", async () => {
  const t = table();
  const [a, b] = sessions(t, 2) as [Session, Session];
  a.releaseTimeout = 50;
  t.lock(a, "r", null, 0);
  const pb = queued(t.lock(b, "r", null, WAIT));
  t.disconnect(a);
  await tick();
  assert.equal(pb.result(), undefined);
  assert.deepEqual(await pb.promise, ACQUIRED);
  assert.deepEqual(holderIds(t, "r"), ["2"]);
  t.close();
});

test("LockTable.disconnect() with release timeout 0 releases at once and forgets the session", () => {
  const t = table();
  const [a, b] = sessions(t, 2) as [Session, Session];
  a.releaseTimeout = 0;
  t.lock(a, "r", null, 0);
  t.disconnect(a);
  assert.equal(t.sessions.has(a.id), false);
  assert.equal(a.expiry, undefined);
  assert.deepEqual(t.lock(b, "r", null, 0), ACQUIRED);
  t.disconnect(a); // twice is harmless
  assert.deepEqual(holderIds(t, "r"), ["2"]);
  t.close();
});

test("LockTable.unlockAll() releases every key of the session and hands each to its waiter", async () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  t.lock(a, "k1", null, 0);
  t.lock(a, "k2", null, 0);
  t.lock(a, "v", "red", 0);
  t.lock(b, "v", "red", 0);
  const pc = queued(t.lock(c, "k2", null, WAIT));
  t.unlockAll(a);
  assert.equal(a.held.size, 0);
  assert.deepEqual(await pc.promise, ACQUIRED);
  assert.deepEqual(holderIds(t, "k1"), []);
  assert.deepEqual(holderIds(t, "v"), ["2"]);
  assert.equal(t.lockCount, 2);
  t.unlockAll(a); // nothing left: a no-op
  assert.equal(t.lockCount, 2);
  t.close();
});

test("LockTable.unlock() answers not_locked and not_yours with the holders", () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  assert.deepEqual(t.unlock(a, "never"), { kind: "not_locked" });
  t.lock(a, "k", null, 0);
  assert.deepEqual(t.unlock(b, "k"), { kind: "not_yours", holders: ["1"] });
  t.lock(a, "v", "red", 0);
  t.lock(b, "v", "red", 0);
  assert.deepEqual(t.unlock(c, "v"), { kind: "not_yours", holders: ["1", "2"] });
  assert.deepEqual(holderIds(t, "k"), ["1"]);
  assert.deepEqual(holderIds(t, "v"), ["1", "2"]);
  t.close();
});

test("LockTable.unlockAll() of the previous holder does not release a lock handed to a waiter (defect 9)", async () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  t.lock(a, "k", null, 0);
  const pb = queued(t.lock(b, "k", null, WAIT));
  t.unlock(a, "k");
  assert.deepEqual(await pb.promise, ACQUIRED);
  assert.equal(a.held.has("k"), false);
  t.lock(a, "other", null, 0);
  t.unlockAll(a);
  assert.deepEqual(holderIds(t, "k"), ["2"]);
  assert.deepEqual(t.lock(c, "k", null, 0), unavailable(["2"]));
  t.close();
});

test("LockTable.unlockAll() handing keys over, then again, leaves the waiters' locks alone (defect 9)", async () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  t.lock(a, "k1", null, 0);
  t.lock(a, "k2", null, 0);
  const pb = queued(t.lock(b, "k1", null, WAIT));
  t.unlockAll(a);
  assert.deepEqual(await pb.promise, ACQUIRED);
  t.lock(a, "k2", null, 0);
  t.unlockAll(a);
  assert.deepEqual(t.lock(c, "k1", null, 0), unavailable(["2"]));
  assert.deepEqual(t.lock(c, "k2", null, 0), ACQUIRED);
  t.close();
});

test("LockTable.disconnect() expiry of the previous holder does not release a lock handed to a waiter (defect 9)", async () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  a.releaseTimeout = 50;
  t.lock(a, "k", null, 0);
  const pb = queued(t.lock(b, "k", null, WAIT));
  t.unlock(a, "k");
  assert.deepEqual(await pb.promise, ACQUIRED);
  t.disconnect(a);
  await until(() => !t.sessions.has(a.id), "a's expiry");
  assert.deepEqual(holderIds(t, "k"), ["2"]);
  assert.deepEqual(t.lock(c, "k", null, 0), unavailable(["2"]));
  // And a value lock handed over likewise stays with its new holders.
  const [d, e, f] = sessions(t, 3) as [Session, Session, Session];
  d.releaseTimeout = 0;
  t.lock(d, "v", "red", 0);
  const pe = queued(t.lock(e, "v", "blue", WAIT));
  t.unlock(d, "v");
  assert.deepEqual(await pe.promise, ACQUIRED);
  t.disconnect(d);
  assert.deepEqual(holderIds(t, "v"), [e.id]);
  assert.deepEqual(t.lock(f, "v", "red", 0), unavailable([e.id], "blue"));
  t.close();
});

test("LockTable.lockCount and sessions count locked keys and live sessions", async () => {
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  assert.equal(t.lockCount, 0);
  t.lock(a, "s1", null, 0);
  t.lock(a, "s2", null, 0);
  t.lock(b, "v", "red", 0);
  t.lock(c, "v", "red", 0);
  assert.equal(t.lockCount, 3);
  const pc = queued(t.lock(c, "s1", null, WAIT));
  assert.equal(t.lockCount, 3, "a waiter is not a lock");
  a.releaseTimeout = 0;
  t.disconnect(a);
  assert.deepEqual(await pc.promise, ACQUIRED);
  assert.equal(t.lockCount, 2);
  assert.equal(t.sessions.size, 2);
  b.releaseTimeout = 1000;
  t.disconnect(b);
  assert.equal(t.sessions.size, 2, "a disconnected session lives on until it expires");
  assert.equal(t.lockCount, 2);
  t.close();
  assert.equal(t.lockCount, 0);
  assert.equal(t.sessions.size, 0);
});

test("LockTable.close() answers every waiter unavailable and clears all timers", async () => {
  using timers = trackTimers();
  const t = table();
  const [a, b, c, d, e] = sessions(t, 5) as [Session, Session, Session, Session, Session];
  t.lock(a, "k", null, 0);
  t.lock(a, "v", "red", 0);
  const waits = [
    queued(t.lock(b, "k", null, 60_000)),
    queued(t.lock(c, "k", null, 60_000)),
    queued(t.lock(d, "v", "blue", 60_000)),
  ];
  e.releaseTimeout = 60_000;
  t.lock(e, "held", null, 0);
  t.disconnect(e);
  // One timer for every wait deadline (the table keeps them in one heap), one release timeout.
  assert.equal(timers.live.size, 2, "the deadlines' timer and 1 release timeout");
  t.close();
  assert.equal(timers.live.size, 0, "close() leaves no timer running");
  for (const w of waits) assert.equal((await w.promise).kind, "unavailable");
  for (const s of [a, b, c, d, e]) assert.equal(s.waiting, null);
  assert.equal(t.sessions.size, 0);
  assert.equal(t.keys.size, 0);
  assert.equal(t.lockCount, 0);
});

test("LockTable.close() answers unavailable even to a waiter that a withdrawn waiter ahead of it would let in", async () => {
  using timers = trackTimers();
  const t = table();
  const [a, b, c] = sessions(t, 3) as [Session, Session, Session];
  t.lock(a, "v", "red", 0);
  const pb = queued(t.lock(b, "v", "blue", 60_000));
  const pc = queued(t.lock(c, "v", "red", 60_000));
  t.close();
  assert.equal(timers.live.size, 0);
  assert.equal((await pb.promise).kind, "unavailable");
  assert.equal((await pc.promise).kind, "unavailable", "no lock is granted during shutdown");
  assert.equal(c.held.size, 0);
});

test("LockTable timers: every wait deadline and release timeout is cleared once it no longer matters", async () => {
  using timers = trackTimers();
  const t = table();
  const [a, b, c, d] = sessions(t, 4) as [Session, Session, Session, Session];
  t.lock(a, "k", null, 0);
  const pb = queued(t.lock(b, "k", null, 60_000));
  const pc = queued(t.lock(c, "k", null, 60_000));
  t.unlock(a, "k"); // b granted: its deadline is void
  assert.deepEqual(await pb.promise, ACQUIRED);
  t.cancelWait(c); // c withdrawn
  assert.deepEqual(await pc.promise, unavailable(["2"]));
  d.releaseTimeout = 60_000;
  t.disconnect(d);
  assert.equal(t.resume(t.createSession(), d.id).result, "resumed"); // d's expiry is void
  assert.equal(timers.live.size, 0);
  t.close();
});

test("LockTable wait deadlines: one timer for all, each wait answered at its own deadline, granted waits never time out, nothing kept after", async () => {
  using timers = trackTimers();
  const t = table();
  const [a, ...waiters] = sessions(t, 201) as [Session, ...Session[]];
  t.lock(a, "k", null, 0);
  // Deadlines out of order: 100 waits that time out, one that is granted first.
  const firstOnK = queued(t.lock(waiters[100]!, "k", null, 60_000));
  const timedOut = waiters.slice(101).map((s, i) => {
    t.lock(waiters[0]!, `held-${i}`, null, 0);
    return queued(t.lock(s, `held-${i}`, null, 5 + ((i * 37) % 40)));
  });
  assert.ok(timers.live.size <= 2, "one timer for every deadline (and none per wait)");
  t.unlock(a, "k");
  assert.equal((await firstOnK.promise).kind, "acquired");
  for (const w of timedOut) assert.equal((await w.promise).kind, "unavailable");
  assert.equal(t.waitingCount, 0);
  assert.equal(timers.live.size, 0, "no timer is left once nothing waits");
  assert.equal(waiters[100]!.held.has("k"), true, "a granted wait is not timed out later");
});
