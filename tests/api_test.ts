/**
 * The API in a JavaScript developer's hands: mistakes are loud (a number
 * where the options go, a wrong type, an unknown option name: an error that
 * says what was given and what is wanted, before anything is sent), a lock
 * not obtained says the key is held by another session, calls after
 * `close()` reject with a stack that points at the call, and the events are
 * typed by name.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectionClosedError,
  ELockClient,
  type ELockClientEventMap,
  type ELockClientEventType,
  type ELockError,
  LockUnavailableError,
  SessionLostError,
  type Transport,
} from "../mod.ts";
import { startServer } from "../src/server/mod.ts";
import { withServer } from "./support/client_server.ts";
import { startProxy } from "./support/proxy.ts";
import { until } from "./support/wait.ts";

/** What the client sent, from its logger (`elock > ...` lines). */
function sentLines(): { logger: { debug(message: string): void }; sent: string[] } {
  const sent: string[] = [];
  return {
    sent,
    logger: {
      debug(message: string) {
        if (message.startsWith("elock > ")) sent.push(message);
      },
    },
  };
}

/** Asserts that `call` rejects with an error of `type` whose message includes every part. */
async function rejectsWith(
  call: () => Promise<unknown>,
  type: typeof TypeError | typeof RangeError,
  ...parts: string[]
): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof type, `${type.name} expected, got ${String(error)}`);
    for (const part of parts) assert.ok(error.message.includes(part), error.message);
    return true;
  });
}

/** Calls with values of the wrong type; TypeScript would catch these, JavaScript does not. */
const loose = (value: unknown) => value as never;

test("a number where the options go is a TypeError that shows { timeout: N }; nothing is sent", async () => {
  await withServer("extended", async ({ connect }) => {
    const { logger, sent } = sentLines();
    const client = await connect({ logger });
    sent.length = 0;
    const wanted = "{ timeout: 2000 }";
    await rejectsWith(() => client.lock("k", loose(2000)), TypeError, "lock()", wanted);
    await rejectsWith(() => client.lockValue("k", "v", loose(2000)), TypeError, wanted);
    await rejectsWith(() => client.acquire("k", loose(2000)), TypeError, "acquire()", wanted);
    await rejectsWith(
      () => client.withLock("k", () => 1, loose(2000)),
      TypeError,
      "withLock()",
      wanted,
    );
    await rejectsWith(
      () => client.withLock("k", loose({ timeout: 5 }), loose(() => 1)),
      TypeError,
      "the function comes second",
    );
    assert.deepEqual(sent, [], "nothing sent");
    assert.equal(await client.lock("k"), true, "the client is fine");
  });
});

test("an option of the wrong type is a TypeError saying what was given; out of range, a RangeError", async () => {
  await withServer("extended", async ({ connect }) => {
    const { logger, sent } = sentLines();
    const client = await connect({ logger });
    sent.length = 0;
    await rejectsWith(
      () => client.lock("k", { timeout: loose("5s") }),
      TypeError,
      'timeout must be a number of ms (or Infinity), got the string "5s"',
    );
    await rejectsWith(() => client.lock("k", { timeout: loose(null) }), TypeError, "got null");
    await rejectsWith(() => client.acquire("k", { timeout: loose("5") }), TypeError, "string");
    await rejectsWith(() => client.lock("k", { signal: loose("x") }), TypeError, "AbortSignal");
    await rejectsWith(() => client.acquire("k", { value: loose(7) }), TypeError, "number 7");
    await rejectsWith(() => client.acquire("k", { fence: loose("yes") }), TypeError, "boolean");
    await rejectsWith(() => client.lock("k", { timeout: -1 }), RangeError, "-1");
    await rejectsWith(() => client.acquire("k", { timeout: Number.NaN }), RangeError, "NaN");
    await rejectsWith(() => client.setReleaseTimeout(loose("0")), TypeError, 'string "0"');
    await rejectsWith(() => client.setReleaseTimeout(-1), RangeError);
    await rejectsWith(
      () => client.locks.request("k", { ifAvailable: loose("yes") }, () => 1),
      TypeError,
      "ifAvailable",
    );
    assert.deepEqual(sent, [], "nothing sent");
  });
});

test("an unknown option name is a TypeError that lists the known ones; nothing is sent", async () => {
  await withServer("extended", async ({ connect }) => {
    const { logger, sent } = sentLines();
    const client = await connect({ logger });
    sent.length = 0;
    const typo = loose({ timout: 5 });
    await rejectsWith(
      () => client.lock("k", typo),
      TypeError,
      '"timout"',
      'did you mean "timeout"',
      "timeout, signal",
    );
    await rejectsWith(() => client.lockValue("k", "v", typo), TypeError, '"timout"');
    await rejectsWith(
      () => client.acquire("k", typo),
      TypeError,
      "timeout, signal, value, within, fence",
    );
    await rejectsWith(() => client.withLock("k", () => 1, typo), TypeError, '"timout"');
    await rejectsWith(
      () => client.locks.request("k", loose({ ifAvaliable: true }), () => 1),
      TypeError,
      '"ifAvaliable"',
      "mode, ifAvailable, signal",
    );
    // Options the client passes on inside (timeout, signal, value) stay accepted.
    const signal = new AbortController().signal;
    assert.equal(await client.locks.request("k", { signal }, () => 1), 1);
    assert.equal(await client.withLock("k", () => 2, { timeout: 10, signal }), 2);
    assert.ok(sent.length > 0);
    sent.length = 0;
    await rejectsWith(() => client.lock("k", loose([])), TypeError, "an array");
    assert.deepEqual(sent, [], "nothing sent");
  });
});

test("connect() options: an unknown name, a wrong type, a number: TypeError, before connecting", async () => {
  let connects = 0;
  const transport: Transport = {
    connect() {
      connects++;
      return Promise.reject(new Error("not reached"));
    },
  };
  const connect = (options: unknown) => ELockClient.connect(options as never);
  await rejectsWith(
    () => connect({ prot: 1, transport }),
    TypeError,
    '"prot"',
    'did you mean "port"',
    "host, port, hosts",
  );
  await rejectsWith(
    () => connect({ port: "11400", transport }),
    TypeError,
    'port must be a port number (1 to 65535), got the string "11400"',
  );
  await rejectsWith(() => connect(11400), TypeError, "{ port: 11400 }");
  await rejectsWith(() => connect(null), TypeError, "got null");
  await rejectsWith(() => connect({ commandTimeout: "5s", transport }), TypeError, '"5s"');
  await rejectsWith(() => connect({ releaseTimeout: "0", transport }), TypeError, 'string "0"');
  await rejectsWith(() => connect({ poolSize: "4", transport }), TypeError, "poolSize");
  await rejectsWith(() => connect({ heartbeat: true, transport }), TypeError, "heartbeat");
  await rejectsWith(() => connect({ logger: {}, transport }), TypeError, "debug()");
  await rejectsWith(
    () => connect({ reconnect: { initalDelay: 5 }, transport }),
    TypeError,
    '"initalDelay"',
    "initialDelay, maxDelay",
  );
  await rejectsWith(
    () => connect({ reconnect: { maxDelay: "1s" }, transport }),
    TypeError,
    "reconnect.maxDelay",
  );
  await rejectsWith(() => connect({ tls: { ca: "x" }, transport }), TypeError, '"ca"');
  await rejectsWith(() => connect({ port: 1.5, transport }), RangeError);
  assert.equal(connects, 0, "no connection was tried");
});

test("startServer() rejects an unknown option name", async () => {
  await rejectsWith(
    () => startServer(loose({ prot: 0 })),
    TypeError,
    '"prot"',
    "hostname, port",
  );
  await rejectsWith(() => startServer(loose(0)), TypeError, "{ port: 0 }");
});

test("a lock not obtained says the key is held by another session", async () => {
  await withServer("extended", async ({ connect }) => {
    const holder = await connect();
    const other = await connect();
    assert.equal(await holder.lock("k"), true);
    for (const timeout of [undefined, 0, 100]) {
      await assert.rejects(
        other.acquire("k", timeout === undefined ? {} : { timeout }),
        (error: unknown) => {
          assert.ok(error instanceof LockUnavailableError);
          assert.match(error.message, /^Lock unavailable: k is held by another session/);
          assert.equal(error.timeout, timeout ?? 0);
          if (timeout !== 100) assert.match(error.message, /timeout 0: tried once/);
          return true;
        },
      );
    }
    // Behind a request of the same client for the key: the same.
    await using held = await other.acquire("j");
    await assert.rejects(other.acquire("j"), /j is held by another session/);
    assert.equal(held.key, "j");
  });
});

// The callers whose names the stacks must show. Each awaits its call: a `return call()` is a tail
// call, which JavaScriptCore leaves out of stacks.
async function callsLockAfterClose(client: ELockClient) {
  return await client.lock("k");
}
async function callsLockValueAfterClose(client: ELockClient) {
  return await client.lockValue("k", "v");
}
async function callsUnlockAfterClose(client: ELockClient) {
  return await client.unlock("k");
}
async function callsStatsAfterClose(client: ELockClient) {
  return await client.stats();
}
async function callsAcquireAfterClose(client: ELockClient) {
  return await client.acquire("k");
}
async function callsWithLockAfterClose(client: ELockClient) {
  return await client.withLock("k", () => 1);
}
async function callsRequestAfterClose(client: ELockClient) {
  return await client.locks.request("k", () => 1);
}
async function callsSetReleaseTimeoutAfterClose(client: ELockClient) {
  return await client.setReleaseTimeout(0);
}

test("calls after close() reject with a stack that points at the call", async () => {
  await withServer("extended", async ({ connect }) => {
    const client = await connect();
    await client.close();
    for (
      const caller of [
        callsLockAfterClose,
        callsLockValueAfterClose,
        callsUnlockAfterClose,
        callsStatsAfterClose,
        callsAcquireAfterClose,
        callsWithLockAfterClose,
        callsRequestAfterClose,
        callsSetReleaseTimeoutAfterClose,
      ]
    ) {
      const name = caller.name;
      await assert.rejects(caller(client), (error: unknown) => {
        assert.ok(error instanceof ConnectionClosedError, `${name}: ${String(error)}`);
        assert.ok(error.stack?.includes(name), `${name} not in the stack:\n${error.stack}`);
        assert.ok(error.cause instanceof ConnectionClosedError, "the close's error is the cause");
        return true;
      });
    }
  });
});

test("the events are typed by name: each listener gets its event's fields", async () => {
  await withServer("extended", async ({ connect, port }) => {
    await using proxy = await startProxy(port);
    const seen: string[] = [];
    // Reconnect on: disconnect, reconnect (once per attempt), connect, resume.
    const resumed = await connect({ port: proxy.port, releaseTimeout: 60_000 });
    const id = await resumed.sessionId();
    resumed.addEventListener("disconnect", (e) => {
      const error: ELockError = e.error;
      seen.push(`disconnect ${error.name}`);
    });
    resumed.addEventListener("reconnect", (e) => {
      const attempt: number = e.attempt;
      seen.push(`reconnect ${attempt}`);
    });
    resumed.addEventListener("connect", (e) => seen.push(e.type));
    resumed.addEventListener("resume", (e) => {
      const sessionId: string = e.sessionId;
      seen.push(`resume ${sessionId === id}`);
    });
    proxy.cut();
    await until(() => seen.includes("resume true"), "resumed");
    assert.deepEqual(seen, [
      "disconnect ConnectionClosedError",
      "reconnect 1",
      "connect",
      "resume true",
    ]);

    // Reconnect off (release timeout 0): the drop loses the session and its locks.
    const lost = await connect({ port: proxy.port, releaseTimeout: 0 });
    assert.equal(await lost.lock("k"), true);
    const sessionlost = new Promise<ELockClientEventMap["sessionlost"]>((resolve) =>
      lost.addEventListener("sessionlost", resolve, { once: true })
    );
    proxy.cut();
    const event = await sessionlost;
    const keys: readonly string[] = event.keys;
    const error: SessionLostError = event.error;
    const sessionId: string = event.sessionId;
    assert.deepEqual(keys, ["k"]);
    assert.ok(error instanceof SessionLostError);
    assert.equal(typeof sessionId, "string");
  });
});

/** Type checks only (never called): a misspelled event name is a type error. */
export function misspelledEventNames(client: ELockClient): void {
  // @ts-expect-error: no such event
  client.addEventListener("sesionlost", () => {});
  // @ts-expect-error: no such event
  client.removeEventListener("reconect", () => {});
  // @ts-expect-error: a connect event has no attempt number
  client.addEventListener("connect", (e) => e.attempt.toFixed());
  const name: ELockClientEventType = "error";
  client.addEventListener(name, (e) => console.log(e.error, e.attempt));
  // An EventTarget still: a listener of any Event fits.
  const target: EventTarget = client;
  target.addEventListener("anything", () => {});
  client.addEventListener("resume", { handleEvent: (e) => console.log(e.sessionId.length) });
}

test("after close(), sessionId() still answers the remembered id (to resume the session elsewhere)", async () => {
  await withServer("extended", async ({ connect }) => {
    const client = await connect({ releaseTimeout: 60_000 });
    const id = await client.sessionId();
    await client.close();
    assert.equal(await client.sessionId(), id);
    await using again = await connect();
    await again.resume(id);
    assert.equal(await again.sessionId(), id);
  });
});

test("quit() after the client's own connection died still ends the pooled sessions and their locks", async () => {
  await withServer("extended", async ({ connect, port }) => {
    await using proxy = await startProxy(port);
    const client = await connect({ port: proxy.port, reconnect: false, releaseTimeout: 60_000 });
    const own = await client.acquire("own"); // the client's own session: connection 0
    const pooled = await client.acquire("pooled"); // a pooled session, on a connection of its own
    assert.equal(proxy.open, 2);
    proxy.cut(0);
    await until(() => client.closed, "the client's own session is closed");
    assert.equal(own.lost, true);
    assert.equal(pooled.lost, false, "the pooled session still holds its lock");
    await assert.rejects(client.quit(), ConnectionClosedError);
    await using check = await connect();
    await until(
      async () => !(await check.debug()).locks.some((l) => l.key === "pooled"),
      "the pooled session's lock is released",
    );
    assert.equal(proxy.open, 0, "every connection is closed");
  });
});
