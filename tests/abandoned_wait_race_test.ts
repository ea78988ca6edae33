/**
 * Interleavings around an aborted wait that frees its session
 * (`Supervisor.renew`, `Connection.leaveWait`): what is queued behind the
 * wait goes to the next connection only, whatever the old connection's
 * writes were doing when the wait was given up. Against the bundled server,
 * over TCP, both dialects; where a write must still be under way when the
 * wait is given up, the client's transport holds its write completions (a
 * socket whose send buffer is full: bytes go out, the write resolves late).
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { type ConnectOptions, defaultTransport, ELockClient, type Transport } from "../mod.ts";
import { type ServerEvent, startServer } from "../src/server/mod.ts";
import { DIALECTS, withServer } from "./support/client_server.ts";
import { startErlangLikeServer } from "./support/erlang_like_server.ts";
import { outcome, within, withTruth } from "./support/lock_truth.ts";
import { until } from "./support/wait.ts";

/**
 * The default transport, with write completions that can be held on the
 * first connection (a socket whose send buffer is full): the bytes of each
 * write are handed to the socket at once, but while held the write
 * resolves only on {@linkcode release} or when the connection is closed
 * (it then fails), and later writes wait behind it, unsent.
 */
function heldWrites(): { transport: Transport; hold(): void; release(): void } {
  const inner = defaultTransport();
  let gate: Promise<void> | null = null;
  let open = () => {};
  let first = true;
  return {
    transport: {
      async connect(options) {
        const connection = await inner.connect(options);
        const gated = first;
        first = false;
        let closed = () => {};
        const gone = new Promise<never>((_, reject) => {
          closed = () => reject(new Error("socket closed"));
        });
        gone.catch(() => {});
        const writer = connection.writable.getWriter();
        const reader = connection.readable.getReader();
        const readable = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const { value, done } = await reader.read();
            if (done) return controller.close();
            controller.enqueue(value);
          },
          cancel: (reason) => {
            closed();
            return reader.cancel(reason);
          },
        }, { highWaterMark: 0 });
        const writable = new WritableStream<Uint8Array>({
          async write(chunk) {
            const held = gated ? gate : null;
            await writer.write(chunk);
            if (held !== null) await Promise.race([held, gone]);
          },
          close: () => writer.close(),
          abort: (reason) => writer.abort(reason),
        });
        return {
          readable,
          writable,
          close: () => {
            closed();
            return connection.close();
          },
        };
      },
    },
    hold() {
      gate = new Promise<void>((resolve) => open = resolve);
    },
    release() {
      gate = null;
      open();
    },
  };
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] a call queued behind an aborted wait whose write was still under way goes to the next connection`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      assert.equal(await other.lock("busy"), true);
      const writes = heldWrites();
      const client = await connect({ poolSize: 1, transport: writes.transport });
      const controller = new AbortController();
      writes.hold();
      const waiting = client.acquire("busy", { timeout: 60_000, signal: controller.signal });
      await waits("busy");
      // Queued behind the wait (the write of the wait has not completed yet).
      const id = outcome(client.command("conn_id"));
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      writes.release();
      const { value, error } = await within(id, 20_000, "conn_id answered");
      assert.equal(error, undefined, `conn_id failed: ${error}`);
      assert.equal(value?.code, 200);
      assert.equal(await client.lock("free"), true);
      assert.equal(await client.unlock("free"), true);
    });
  });

  test(`[${dialect}] set_timeout and lock queued behind an aborted wait go to the next connection, not to the one it leaves (no lock left to a ghost)`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      assert.equal(await other.lock("busy"), true);
      const writes = heldWrites();
      const client = await connect({ poolSize: 1, transport: writes.transport });
      const controller = new AbortController();
      writes.hold();
      const waiting = client.acquire("busy", { timeout: 60_000, signal: controller.signal });
      await waits("busy");
      const ghost = fixture.events.find((e) => e.type === "wait" && e.key === "busy");
      assert.ok(ghost !== undefined && ghost.type === "wait");
      // Queued behind the wait: a release timeout for the session, and a raw lock of a free key.
      const set = outcome(client.setReleaseTimeout(30_000));
      const locked = outcome(client.lock("x"));
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      writes.release();
      assert.deepEqual(await within(set, 20_000, "setReleaseTimeout"), { value: undefined });
      assert.deepEqual(
        await within(locked, 20_000, "lock(x)"),
        { value: true },
        "x was free: the raw lock gets it",
      );
      // The left connection gets busy, unlocks it and closes.
      assert.equal(await other.unlock("busy"), true);
      await until(
        () => fixture.events.some((e) => e.type === "disconnect" && e.session === ghost.session),
        "the old session's connection ended",
      );
      // The old session holds nothing now.
      const probe = await ELockClient.connect({ port: fixture.port, releaseTimeout: 0 });
      try {
        assert.equal(await probe.lock("busy"), true, "the late grant of busy was released");
        assert.equal(await probe.lock("x"), false, "x is the client's");
        assert.equal(await client.unlock("x"), true);
        assert.equal(await probe.lock("x"), true, "and nobody else held it");
      } finally {
        await probe.close();
      }
    });
  });
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] quit() right after an aborted wait (the client is reconnecting as a new session) ends the session`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      assert.equal(await other.lock("busy"), true);
      const client = await connect({ poolSize: 1 });
      const controller = new AbortController();
      const waiting = client.acquire("busy", { timeout: 60_000, signal: controller.signal });
      await waits("busy");
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      assert.deepEqual(await within(outcome(client.quit()), 20_000, "quit()"), {
        value: undefined,
      });
      assert.equal(client.closed, true);
    });
  });

  test(`[${dialect}] quit() while the write of an aborted wait is still under way ends the session`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      assert.equal(await other.lock("busy"), true);
      const writes = heldWrites();
      const client = await connect({ poolSize: 1, transport: writes.transport });
      const controller = new AbortController();
      const waiting = client.acquire("busy", { timeout: 60_000, signal: controller.signal });
      await waits("busy");
      writes.hold();
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      const quit = outcome(client.quit());
      writes.release();
      assert.deepEqual(await within(quit, 20_000, "quit()"), { value: undefined });
      assert.equal(client.closed, true);
    });
  });

  test(`[${dialect}] quit() while reconnecting after a drop waits for the connection, then ends the session`, async () => {
    await withTruth(dialect, async ({ connect, probe, proxy }) => {
      const client = await connect();
      assert.equal(await client.lock("k"), true);
      let quit: Promise<{ value?: void; error?: unknown }> | null = null;
      let reconnecting = false;
      // Once the drop is handled: the client waits for its next connection.
      client.addEventListener("disconnect", () =>
        queueMicrotask(() => {
          reconnecting = client.reconnecting;
          quit = outcome(client.quit());
        }), { once: true });
      proxy.cut();
      await until(() => quit !== null, "the drop seen");
      assert.equal(reconnecting, true);
      assert.deepEqual(await within(quit!, 20_000, "quit()"), { value: undefined });
      assert.equal(client.closed, true);
      if (dialect === "extended") {
        const p = await probe();
        assert.equal(await p.lock("k"), true, "quit released k");
      }
    });
  });
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] an aborted wait whose write never completes does not hold the calls queued behind it`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      assert.equal(await other.lock("busy"), true);
      const writes = heldWrites();
      const client = await connect({
        poolSize: 1,
        transport: writes.transport,
        commandTimeout: 500,
      });
      const controller = new AbortController();
      writes.hold();
      const waiting = client.acquire("busy", { timeout: 30_000, signal: controller.signal });
      await waits("busy");
      const queued = outcome(client.lock("x"));
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      try {
        // The first connection's writes never complete: the next connection takes the lock
        // at once.
        assert.deepEqual(await within(queued, 20_000, "the queued lock"), { value: true });
      } finally {
        writes.release();
      }
      assert.equal(await client.unlock("x"), true);
    });
  });
}

/** A hook on what comes from the server: may hold a chunk back until the promise it returns. */
type Seen = (text: string) => void | Promise<void>;

/**
 * The default transport, with a tap on what comes from the server: `seen`
 * is called with each chunk before it is handed on to the client, which
 * waits for the promise it returns (bytes the client has not read yet).
 */
function tappedReads(): { transport: Transport; seen: Seen | null } {
  const inner = defaultTransport();
  const tap: { transport: Transport; seen: Seen | null } = {
    seen: null,
    transport: {
      async connect(options) {
        const connection = await inner.connect(options);
        const reader = connection.readable.getReader();
        const readable = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const { value, done } = await reader.read();
            if (done) return controller.close();
            await tap.seen?.(new TextDecoder().decode(value));
            controller.enqueue(value);
          },
          cancel: (reason) => reader.cancel(reason),
        }, { highWaterMark: 0 });
        return { readable, writable: connection.writable, close: () => connection.close() };
      },
    },
  };
  return tap;
}

/** Resolves after `hops` microtask hops, or (`"timer"`) on a timer. */
function hops(count: number | "timer"): Promise<void> {
  if (count === "timer") return new Promise((resolve) => setTimeout(resolve, 0));
  let p = Promise.resolve();
  for (let i = 0; i < count; i++) p = p.then(() => {});
  return p;
}

/**
 * When the wait is given up, around its grant: `before` hops before the
 * client reads the grant (it is held back meanwhile), or `after` hops
 * after the client was handed it.
 */
type Moment = { before: number | "timer" } | { after: number | "timer" };

const COUNTS: (number | "timer")[] = [...Array.from({ length: 12 }, (_, i) => i), "timer"];
const MOMENTS: Moment[] = [
  ...COUNTS.map((before) => ({ before })),
  ...COUNTS.map((after) => ({ after })),
];

/** Where a sweep runs: a server, and how to know a wait reached it. */
interface Target {
  readonly port: number;
  /** Resolves once the client's lock of `key` waits on the server (or soon after it was sent). */
  waits(key: string): Promise<void>;
  /** How the old session of the client left, if the server reports it: `held` locks then. */
  left(): number[] | null;
}

/**
 * For every {@linkcode MOMENTS}: `other` holds `busy`, the client (poolSize
 * 1) waits for it with `acquire()`, a raw lock is queued behind the wait,
 * `other` unlocks, and the wait is given up at that moment around the
 * grant. Whatever the moment: one holder at a time, the queued raw lock
 * granted, `busy` free at once after (no session keeps it for the release
 * timeout), the client able to take it again, no `disconnect` or
 * `sessionlost` reported.
 *
 * @returns how each moment ended: `granted`, `released` (the late grant
 *   was seen and unlocked), `left N` (the connection was left; the old
 *   session held N locks when the server saw it end), or `aborted` (the
 *   server does not say which)
 */
async function sweep(target: () => Promise<Target & AsyncDisposable>): Promise<Set<string>> {
  const outcomes = new Set<string>();
  for (const moment of MOMENTS) {
    await using server = await target();
    const open: ELockClient[] = [];
    const connect = async (options: ConnectOptions = {}) => {
      const client = await ELockClient.connect({ port: server.port, ...options });
      open.push(client);
      return client;
    };
    try {
      const other = await connect();
      assert.equal(await other.lock("busy"), true);
      const tap = tappedReads();
      const client = await connect({ poolSize: 1, transport: tap.transport });
      const events: string[] = [];
      for (const type of ["disconnect", "sessionlost"] as const) {
        client.addEventListener(type, () => events.push(type));
      }
      const controller = new AbortController();
      const waiting = outcome(
        client.acquire("busy", { timeout: 60_000, signal: controller.signal }),
      );
      await server.waits("busy");
      // Queued behind the wait on the same session: goes on whatever happens to the wait.
      const raw = outcome(client.lock("raw", { timeout: 60_000 }));
      tap.seen = async (text) => {
        if (!/^200 /m.test(text)) return;
        tap.seen = null;
        const abort = () => controller.abort(new Error("enough"));
        if ("before" in moment) {
          abort();
          await hops(moment.before);
        } else void hops(moment.after).then(abort);
      };
      assert.equal(await other.unlock("busy"), true);
      const { value: held, error } = await within(waiting, 20_000, "acquire settled");
      const where = `(abort at ${JSON.stringify(moment)} hops around the grant)`;
      assert.deepEqual(await within(raw, 20_000, "raw lock"), { value: true }, where);
      const probe = await connect({ releaseTimeout: 0 });
      if (held !== undefined) {
        assert.equal(await probe.lock("busy"), false, `the holder excludes others ${where}`);
        assert.equal(await held.release(), true, where);
      } else assert.match(String(error), /enough/, where);
      // The late grant (if any) is freed at once: no session keeps it for the release timeout.
      assert.equal(await probe.lock("busy", { timeout: 10_000 }), true, `busy freed ${where}`);
      const left = server.left();
      outcomes.add(
        held !== undefined
          ? "granted"
          : left === null
          ? "aborted"
          : left.length === 0
          ? "released"
          : `left ${left.join(",")}`,
      );
      assert.equal(await probe.unlock("busy"), true);
      assert.equal(await client.unlock("raw"), true, where);
      const again = await client.acquire("busy", { timeout: 10_000 });
      assert.equal(await probe.lock("busy"), false, where);
      assert.equal(await again.release(), true, where);
      assert.deepEqual(events, [], `no disconnect or sessionlost reported ${where}`);
    } finally {
      await Promise.all(open.map((client) => client.close()));
    }
  }
  return outcomes;
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] an abort at every moment around the grant of a wait (acquire, poolSize 1): one holder, no lock left`, async () => {
    const outcomes = await sweep(async () => {
      const events: ServerEvent[] = [];
      const server = await startServer({ port: 0, dialect, onEvent: (e) => events.push(e) });
      const wait = () => events.find((e) => e.type === "wait" && e.key === "busy");
      return {
        port: server.port,
        waits: (key) => until(() => events.some((e) => e.type === "wait" && e.key === key), key),
        left: () => {
          const ghost = wait();
          return events.flatMap((e) =>
            e.type === "disconnect" && e.session === ghost?.session ? [e.held] : []
          );
        },
        [Symbol.asyncDispose]: () => server.close(),
      };
    });
    // left N: the left connection ended the old session (holding N: the late grant) and closed.
    assert.ok(outcomes.has("granted"), [...outcomes].join(", "));
    assert.ok([...outcomes].some((o) => o.startsWith("left")), [...outcomes].join(", "));
  });
}

for (const closedWaiters of ["drop", "keep", "crash"] as const) {
  const name = closedWaiters === "crash" ? "NodeJS-like" : "Erlang-like";
  test(`[${name} server, closed waiters: ${closedWaiters}] an abort at every moment around the grant of a wait: one holder, no lock left, the server up`, async () => {
    const outcomes = await sweep(async () => {
      const server = await startErlangLikeServer({ closedWaiters });
      const clients: ELockClient[] = [];
      return {
        port: server.port,
        // No events here: the wait was written, and another connection's round trip came after it.
        async waits() {
          const client = await ELockClient.connect({ port: server.port });
          clients.push(client);
          await client.command("conn_id");
          await client.command("conn_id");
        },
        left: () => null,
        async [Symbol.asyncDispose]() {
          await Promise.all(clients.map((client) => client.close()));
          const crashed = server.crashed;
          await server.close();
          assert.equal(crashed, false, "the server stayed up");
        },
      };
    });
    assert.ok(outcomes.has("granted"), [...outcomes].join(", "));
    assert.ok(outcomes.has("aborted"), [...outcomes].join(", "));
  });
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] a queued acquire aborted behind another aborted wait: the wait left is freed whatever its key`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      assert.equal(await other.lock("a"), true);
      assert.equal(await other.lock("b"), true);
      const client = await connect({ poolSize: 1 });
      const sa = new AbortController();
      const sb = new AbortController();
      const pa = client.acquire("a", { timeout: 60_000, signal: sa.signal });
      // Shares the one session: queued behind a's wait.
      const pb = client.acquire("b", { timeout: 60_000, signal: sb.signal });
      await waits("a");
      // b's abort (queued, never sent) comes first and leaves a's wait.
      sb.abort(new Error("b enough"));
      sa.abort(new Error("a enough"));
      await assert.rejects(pb, /b enough/);
      await assert.rejects(pa, /a enough/);
      assert.equal(typeof (await client.stats()).locks, "number");
      assert.equal(await other.unlock("a"), true);
      const probe = await connect({ releaseTimeout: 0 });
      assert.equal(
        await probe.lock("a", { timeout: 10_000 }),
        true,
        "a's late grant was freed, not kept for the release timeout",
      );
    });
  });

  test(`[${dialect}] a wait past its deadline, then a queued acquire aborted behind it: the late grant is freed`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      assert.equal(await other.lock("a"), true);
      assert.equal(await other.lock("b"), true);
      const client = await connect({ poolSize: 1 });
      const sb = new AbortController();
      // Sent as `lock a 2`: the client's deadline passes before the server answers.
      const pa = client.acquire("a", { timeout: 1500 });
      const pb = client.acquire("b", { timeout: 60_000, signal: sb.signal });
      await waits("a");
      await assert.rejects(pa, { name: "LockUnavailableError" });
      sb.abort(new Error("b enough"));
      await assert.rejects(pb, /b enough/);
      assert.equal(await other.unlock("a"), true);
      const probe = await connect({ releaseTimeout: 0 });
      assert.equal(
        await probe.lock("a", { timeout: 10_000 }),
        true,
        "a's late grant was freed, not kept for the release timeout",
      );
      const held = await client.acquire("b", { timeout: 0 }).catch((e) => e);
      assert.equal(held instanceof Error, true, "b is still other's");
    });
  });
}
