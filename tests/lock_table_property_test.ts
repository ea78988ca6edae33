/**
 * Property-based tests of the lock table (fast-check): random command
 * sequences from random sessions, with random disconnects, resumes and
 * passing time, keep the table's invariants after every step, and once
 * every session has disconnected and the release timeouts have run, the
 * table is empty and every wait has been answered.
 *
 * Time is a fake clock: the table's `setTimeout`/`clearTimeout` are
 * replaced while a sequence runs (it runs synchronously), and "time passes"
 * fires the next timer. Sessions follow the rules the connection handler
 * keeps: a session in a wait sends nothing until it is answered, and a
 * disconnect withdraws the wait first.
 *
 * The same kind of sequence also runs over real TCP against the bundled
 * server, in tests/lock_table_tcp_property_test.ts.
 *
 * Seeds: see tests/support/property.ts.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { type LockResult, LockTable, type Session, type Waiter } from "../src/server/lock_table.ts";
import { propertyParameters } from "./support/property.ts";

/** A fake clock behind the global `setTimeout`/`clearTimeout`, until restored. */
function installClock() {
  const g = globalThis as unknown as {
    setTimeout: (fn: () => void, ms?: number) => unknown;
    clearTimeout: (id: unknown) => void;
  };
  const real = { setTimeout: g.setTimeout, clearTimeout: g.clearTimeout };
  const timers = new Map<number, { at: number; fn: () => void }>();
  let now = 0;
  let nextId = 1;
  g.setTimeout = (fn, ms = 0) => {
    const id = nextId++;
    timers.set(id, { at: now + Math.max(0, ms), fn });
    return id;
  };
  g.clearTimeout = (id) => void timers.delete(id as number);
  return {
    get pending(): number {
      return timers.size;
    },
    /** Fires the earliest timer (the first set, on a tie); false when none is left. */
    fireNext(): boolean {
      let first: [number, { at: number; fn: () => void }] | null = null;
      for (const entry of timers) if (first === null || entry[1].at < first[1].at) first = entry;
      if (first === null) return false;
      timers.delete(first[0]);
      now = Math.max(now, first[1].at);
      first[1].fn();
      return true;
    },
    restore(): void {
      g.setTimeout = real.setTimeout;
      g.clearTimeout = real.clearTimeout;
    },
  };
}

type Command =
  | { t: "connect" }
  | { t: "lock"; c: number; key: string; value: string | null; wait: number }
  | { t: "unlock"; c: number; key: string }
  | { t: "unlockAll"; c: number }
  | { t: "setTimeout"; c: number; ms: number }
  | { t: "disconnect"; c: number }
  | { t: "resume"; c: number; target: number }
  | { t: "tick" };

const KEYS = ["a", "b", "c"];
const conn = fc.nat(7);
const command: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.constant({ t: "connect" as const }), weight: 2 },
  {
    arbitrary: fc.record({
      t: fc.constant("lock" as const),
      c: conn,
      key: fc.constantFrom(...KEYS),
      value: fc.constantFrom(null, null, "x", "y"),
      wait: fc.constantFrom(0, 1000, 5000),
    }),
    weight: 8,
  },
  {
    arbitrary: fc.record({
      t: fc.constant("unlock" as const),
      c: conn,
      key: fc.constantFrom(...KEYS),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ t: fc.constant("unlockAll" as const), c: conn }), weight: 1 },
  {
    arbitrary: fc.record({
      t: fc.constant("setTimeout" as const),
      c: conn,
      ms: fc.constantFrom(0, 1000, 30_000),
    }),
    weight: 1,
  },
  { arbitrary: fc.record({ t: fc.constant("disconnect" as const), c: conn }), weight: 2 },
  {
    arbitrary: fc.record({ t: fc.constant("resume" as const), c: conn, target: fc.nat(15) }),
    weight: 1,
  },
  { arbitrary: fc.constant({ t: "tick" as const }), weight: 3 },
);

/** A client connection: the session it speaks for, until it closes. */
interface Connection {
  session: Session;
  open: boolean;
}

/** Every invariant of the table; `values` remembers the value each holder got its lock with. */
function checkInvariants(
  table: LockTable,
  detectDeadlocks: boolean,
  values: Map<Session, Map<string, string | null>>,
): void {
  const waiters = new Map<Session, Waiter>();
  for (const [key, state] of table.keys) {
    assert.equal(state.key, key);
    assert.ok(
      state.holders.size > 0 || state.queue.length === 0,
      `${key}: waiters behind a free lock`,
    );
    assert.ok(state.holders.size > 0, `${key}: a key nobody holds is kept`);
    if (state.value === null) {
      assert.ok(state.holders.size <= 1, `${key}: held exclusively by ${state.holders.size}`);
    }
    for (const holder of state.holders) {
      assert.equal(table.sessions.get(holder.id), holder, `${key}: held by a forgotten session`);
      assert.ok(holder.held.has(key), `${key}: its holder does not know it holds it`);
      const got = values.get(holder) ?? new Map<string, string | null>();
      values.set(holder, got);
      if (!got.has(key)) got.set(key, state.value);
      assert.equal(got.get(key), state.value, `${key}: the value changed under a holder`);
    }
    const head = state.queue[0];
    if (head !== undefined) {
      const grantable = head.value !== null && head.value === state.value;
      assert.ok(!grantable, `${key}: the head waiter could have been granted`);
    }
    for (const waiter of state.queue) {
      assert.equal(waiter.key, key);
      assert.equal(waiter.session.waiting, waiter, `${key}: a queued waiter its session forgot`);
      assert.ok(waiter.session.connected, `${key}: a disconnected session waits`);
      assert.ok(!state.holders.has(waiter.session), `${key}: a holder waits for its own key`);
      assert.ok(!waiters.has(waiter.session), "a session waits twice");
      waiters.set(waiter.session, waiter);
    }
  }
  for (const session of table.sessions.values()) {
    for (const key of session.held.keys()) {
      assert.ok(table.keys.get(key)?.holders.has(session), `#${session.id} thinks it holds ${key}`);
    }
    if (session.waiting !== null) {
      assert.equal(waiters.get(session), session.waiting, `#${session.id} waits in no queue`);
    }
  }
  for (const [session, got] of values) {
    for (const key of got.keys()) {
      if (!table.keys.get(key)?.holders.has(session)) got.delete(key);
    }
  }
  if (detectDeadlocks) assertNoWaitCycle(table, waiters);
}

/** Follows "waits for a key held by" edges: with deadlock detection on there is no cycle. */
function assertNoWaitCycle(table: LockTable, waiters: Map<Session, Waiter>): void {
  const done = new Set<Session>();
  const visit = (session: Session, path: Session[]): void => {
    if (path.includes(session)) {
      assert.fail(`wait cycle: ${[...path, session].map((s) => `#${s.id}`).join(" => ")}`);
    }
    if (done.has(session)) return;
    const waiter = waiters.get(session);
    if (waiter !== undefined) {
      for (const holder of table.keys.get(waiter.key)?.holders ?? []) {
        visit(holder, [...path, session]);
      }
    }
    done.add(session);
  };
  for (const session of waiters.keys()) visit(session, []);
}

/**
 * Runs `commands` against a fresh table, checking the invariants after each
 * step; then disconnects everyone and lets time run out. Returns the waits'
 * outcomes, to be checked once their promises have had a chance to settle.
 */
function run(commands: Command[], detectDeadlocks: boolean): Array<() => LockResult | undefined> {
  const clock = installClock();
  const waits: Array<() => LockResult | undefined> = [];
  try {
    const table = new LockTable({ sequentialIds: true, detectDeadlocks });
    const values = new Map<Session, Map<string, string | null>>();
    const connections: Connection[] = [];
    const everSeen: string[] = [];
    const open = () => connections.filter((c) => c.open);
    /** The open connection `c` picks, if it may send a command now. */
    const speaker = (c: number): Connection | null => {
      const live = open();
      const picked = live[c % Math.max(1, live.length)];
      return picked === undefined || picked.session.waiting !== null ? null : picked;
    };
    const close = (connection: Connection) => {
      connection.open = false;
      table.cancelWait(connection.session);
      table.disconnect(connection.session);
    };
    for (const cmd of commands) {
      switch (cmd.t) {
        case "connect": {
          const session = table.createSession();
          everSeen.push(session.id);
          connections.push({ session, open: true });
          break;
        }
        case "lock": {
          const who = speaker(cmd.c);
          if (who === null) break;
          const result = table.lock(who.session, cmd.key, cmd.value, cmd.wait);
          if (result instanceof Promise) {
            let outcome: LockResult | undefined;
            result.then((r) => outcome = r);
            waits.push(() => outcome);
          } else if (result.kind === "acquired") {
            assert.ok(who.session.held.has(cmd.key), "acquired but not held");
          }
          break;
        }
        case "unlock": {
          const who = speaker(cmd.c);
          if (who === null) break;
          const result = table.unlock(who.session, cmd.key);
          if (result.kind === "released") assert.ok(!who.session.held.has(cmd.key));
          break;
        }
        case "unlockAll": {
          const who = speaker(cmd.c);
          if (who === null) break;
          table.unlockAll(who.session);
          assert.equal(who.session.held.size, 0);
          break;
        }
        case "setTimeout": {
          const who = speaker(cmd.c);
          if (who !== null) who.session.releaseTimeout = cmd.ms;
          break;
        }
        case "disconnect": {
          const live = open();
          const picked = live[cmd.c % Math.max(1, live.length)];
          if (picked !== undefined) close(picked);
          break;
        }
        case "resume": {
          const who = speaker(cmd.c);
          const id = everSeen[cmd.target % Math.max(1, everSeen.length)];
          if (who === null || id === undefined) break;
          const { result, session } = table.resume(who.session, id);
          if (result === "resumed") {
            assert.equal(session.id, id);
            assert.ok(session.connected);
            who.session = session;
          }
          break;
        }
        case "tick":
          clock.fireNext();
          break;
      }
      checkInvariants(table, detectDeadlocks, values);
    }
    for (const connection of open()) {
      close(connection);
      checkInvariants(table, detectDeadlocks, values);
    }
    for (let fired = 0; clock.fireNext(); fired++) {
      assert.ok(fired < 10_000, "timers keep coming");
      checkInvariants(table, detectDeadlocks, values);
    }
    assert.deepEqual([...table.keys.keys()], [], "locks left after every session expired");
    assert.deepEqual([...table.sessions.keys()], [], "sessions left after every one expired");
    assert.equal(clock.pending, 0);
  } finally {
    clock.restore();
  }
  return waits;
}

for (const detectDeadlocks of [true, false]) {
  const dialect = detectDeadlocks ? "extended" : "original";
  test(
    `LockTable (${dialect}): random sessions, commands and disconnects keep the invariants, and end empty`,
    {
      timeout: 60_000,
    },
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(command, { minLength: 20, maxLength: 80 }), async (commands) => {
          const connects: Command[] = [{ t: "connect" }, { t: "connect" }, { t: "connect" }];
          const waits = run([...connects, ...commands], detectDeadlocks);
          // Let the waits' promise callbacks run: every wait has been answered.
          for (let i = 0; i < 5; i++) await Promise.resolve();
          for (const [i, outcome] of waits.entries()) {
            assert.notEqual(outcome(), undefined, `wait #${i} was never answered`);
          }
        }),
        propertyParameters(500),
      );
    },
  );
}
