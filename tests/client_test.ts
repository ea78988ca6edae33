/**
 * ELockClient against the bundled server over real TCP, in both dialects:
 * every method, every reply code, both key encodings.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectionClosedError,
  ELockClient,
  HeldLock,
  InvalidKeyError,
  LockUnavailableError,
  UnexpectedResponseError,
  UnsupportedCommandError,
} from "../mod.ts";
import { closedPort, DIALECTS, withServer } from "./support/client_server.ts";
import { startProxy } from "./support/proxy.ts";
import { until } from "./support/wait.ts";
import { sessionName } from "../mod.ts";

for (const dialect of DIALECTS) {
  test(`[${dialect}] lock() answers true when granted, false when another session holds the key`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const b = await connect();
      assert.equal(await a.lock("k"), true);
      assert.equal(await a.lock("k"), true, "re-entrant");
      assert.equal(await b.lock("k"), false);
      assert.equal(await b.lock("k", { timeout: 200 }), false);
      assert.equal(await a.unlock("k"), true, "one unlock releases a re-entered lock");
      assert.equal(await b.lock("k"), true);
    });
  });

  test(`[${dialect}] unlock() answers false for a key of another session`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const b = await connect();
      await a.lock("k");
      assert.equal(await b.unlock("k"), false);
      assert.equal(await a.unlock("k"), true);
      // A key nobody holds: the original server says 403 not_locked, the extended 200.
      assert.equal(await a.unlock("free"), dialect === "extended");
    });
  });

  test(`[${dialect}] unlockAll() releases every lock of the session`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const b = await connect();
      for (const key of ["x", "y", "z"]) assert.equal(await a.lock(key), true);
      await a.unlockAll();
      for (const key of ["x", "y", "z"]) assert.equal(await b.lock(key), true);
    });
  });

  test(`[${dialect}] stats() parses the counters`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const b = await connect();
      await a.lock("one");
      await b.lock("two");
      assert.deepEqual(await a.stats(), { clients: 2, locks: 2, monitoring: 2 });
    });
  });

  test(`[${dialect}] sessionId() returns the session's id, the same every time`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const id = await a.sessionId();
      assert.match(id, /^\S+$/);
      assert.equal(await a.sessionId(), id);
      assert.equal((await a.command("conn_id")).message, id);
      const b = await connect();
      assert.notEqual(await b.sessionId(), id);
    });
  });

  test(`[${dialect}] setReleaseTimeout(0): locks go the moment the connection closes`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const b = await connect();
      await a.setReleaseTimeout(0);
      await a.lock("k");
      await a.close();
      await until(async () => await b.lock("k"), "k released after the drop");
    });
  });

  test(`[${dialect}] connect({ releaseTimeout }) sends set_timeout first`, async () => {
    await withServer(dialect, async ({ connect, port }) => {
      await using proxy = await startProxy(port);
      const a = await connect({ port: proxy.port, releaseTimeout: 0 });
      assert.equal(proxy.sent[0], "set_timeout 0\n");
      await a.lock("k");
      await a.close();
      const b = await connect();
      await until(async () => await b.lock("k"), "k released after the drop");
    });
  });

  test(`[${dialect}] setReleaseTimeout() rejects a bad value before sending`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      await assert.rejects(a.setReleaseTimeout(-1), RangeError);
      await assert.rejects(a.setReleaseTimeout(1.5), RangeError);
      await assert.rejects(a.setReleaseTimeout(2 ** 31), RangeError);
      assert.equal(await a.lock("still-usable"), true);
    });
  });

  test(`[${dialect}] close() keeps the session's locks for the release timeout; resume() adopts them`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      await a.lock("k");
      const id = await a.sessionId();
      await a.close();
      const c = await connect();
      assert.equal(await c.lock("k"), false, "held by the dropped session");
      const b = await connect();
      await b.resume(id);
      assert.equal(await b.sessionId(), id);
      assert.equal(await b.unlock("k"), true, "b now owns k");
      assert.equal(await c.lock("k"), true);
    });
  });

  test(`[${dialect}] resume() on a connection that already sent opens a new one and sets the release timeout again`, async () => {
    await withServer(dialect, async ({ connect, port }) => {
      const a = await connect();
      await a.lock("k");
      const id = await a.sessionId();
      await a.close();
      await using proxy = await startProxy(port);
      const b = await connect({ port: proxy.port, releaseTimeout: 0 });
      await b.lock("mine");
      await b.resume(id);
      assert.equal(proxy.accepted, 2, "a second connection");
      assert.equal(proxy.sent[1], `conn_id ${id}\nset_timeout 0\n`);
      assert.equal(await b.sessionId(), id);
      // The resumed session has release timeout 0 now: closing frees k at once.
      await b.close();
      const c = await connect();
      await until(async () => await c.lock("k"), "k released after the drop");
    });
  });

  test(`[${dialect}] resume() rejects an id the server refuses, and the client stays usable`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const other = await connect();
      const activeId = await other.sessionId();
      await assert.rejects(a.resume(activeId), (error: unknown) => {
        assert.ok(error instanceof UnexpectedResponseError);
        assert.match(error.reply, /^403 /);
        return true;
      });
      assert.equal(await a.lock("k"), true);
      await assert.rejects(a.resume("bad id"), InvalidKeyError);
    });
  });

  test(`[${dialect}] command() sends a raw line and returns the reply with its data lines`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const lock = await a.command("lock k");
      assert.equal(lock.code, 200);
      const stats = await a.command("stats");
      assert.deepEqual(stats.lines, ["STAT clients 1", "STAT locks 1", "STAT monitoring 1"]);
      const unknown = await a.command("nonsense");
      assert.equal(unknown.code, dialect === "original" ? 400 : 500);
      await assert.rejects(a.command("lock a\nunlock_all"), TypeError);
      await assert.rejects(a.command("lock a\r"), TypeError);
      await assert.rejects(a.command(""), TypeError);
      assert.equal((await a.command("conn_id")).code, 200, "still in step");
    });
  });

  test(`[${dialect}] quit() ends the session; later calls reject with ConnectionClosedError`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const b = await connect();
      await a.setReleaseTimeout(0);
      await a.lock("k");
      await a.quit();
      assert.equal(a.closed, true);
      await assert.rejects(a.lock("k"), ConnectionClosedError);
      // Extended: quit unlocks. Original: the disconnect (timeout 0) does.
      await until(async () => await b.lock("k"), "k released after quit");
    });
  });

  test(`[${dialect}] close() rejects pending calls with ConnectionClosedError`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const b = await connect();
      await a.lock("k");
      const waiting = assert.rejects(b.lock("k", { timeout: 30_000 }), ConnectionClosedError);
      const queued = assert.rejects(b.stats(), ConnectionClosedError);
      await b.close();
      await waiting;
      await queued;
      await assert.rejects(b.unlock("k"), ConnectionClosedError);
    });
  });

  test(`[${dialect}] await using releases every lock of the session`, async () => {
    await withServer(dialect, async ({ connect, port }) => {
      const b = await connect();
      {
        await using a = await ELockClient.connect({ port });
        await a.lock("x");
        await a.lock("y");
      }
      // The release timeout is the default 30 s: only unlock_all frees them now.
      assert.equal(await b.lock("x"), true);
      assert.equal(await b.lock("y"), true);
    });
  });

  test(`[${dialect}] acquire() returns a handle released by await using`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const b = await connect();
      {
        await using lock = await a.acquire("k", { timeout: 1000 });
        assert.ok(lock instanceof HeldLock);
        assert.equal(lock.key, "k");
        assert.equal(lock.value, null);
        assert.equal(lock.released, false);
        assert.equal(await b.lock("k"), false);
      }
      assert.equal(await b.lock("k"), true);
      await assert.rejects(a.acquire("k", { timeout: 100 }), (error: unknown) => {
        assert.ok(error instanceof LockUnavailableError);
        assert.equal(error.key, "k");
        return true;
      });
      await assert.rejects(a.acquire("k"), (error: unknown) => {
        assert.ok(error instanceof LockUnavailableError);
        assert.match(error.reply ?? "", /^409 /);
        return true;
      });
    });
  });

  test(`[${dialect}] HeldLock.release() releases once and remembers the result`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const lock = await a.acquire("k");
      assert.equal(await lock.release(), true);
      assert.equal(lock.released, true);
      assert.equal(await lock.release(), true);
      const b = await connect();
      assert.equal(await b.lock("k"), true);
    });
  });

  test(`[${dialect}] withLock() returns the callback's result and releases, also when it throws`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const a = await connect();
      const b = await connect();
      const result = await a.withLock("k", async (lock) => {
        assert.equal(await b.lock(lock.key), false);
        return 42;
      });
      assert.equal(result, 42);
      assert.equal(await b.lock("k"), true);
      await b.unlock("k");
      await assert.rejects(
        a.withLock("k", () => {
          throw new Error("work failed");
        }),
        /work failed/,
      );
      assert.equal(await b.lock("k"), true, "released after the throw");
      let called = false;
      await assert.rejects(
        a.withLock("k", () => void (called = true), { timeout: 50 }),
        LockUnavailableError,
      );
      assert.equal(called, false);
    });
  });

  test(`[${dialect}] raw keys that could inject a command are rejected before anything is sent`, async () => {
    await withServer(dialect, async ({ connect, port }) => {
      await using proxy = await startProxy(port);
      const a = await connect({ port: proxy.port });
      const bad = ["a b", "a\nunlock_all", "a\r", "", "x".repeat(1025), "\ud800"];
      for (const key of bad) {
        await assert.rejects(a.lock(key), InvalidKeyError, JSON.stringify(key));
        await assert.rejects(a.unlock(key), InvalidKeyError);
        await assert.rejects(a.acquire(key), InvalidKeyError);
      }
      await assert.rejects(a.lockValue("k", "two words"), (error: unknown) => {
        assert.ok(error instanceof InvalidKeyError);
        assert.equal(error.what, "value");
        return true;
      });
      await assert.rejects(a.lock("k", { timeout: -1 }), RangeError);
      await assert.rejects(a.lock("k", { timeout: Number.NaN }), RangeError);
      assert.equal(await a.lock("é\tok/📦"), true, "tabs and any UTF-8 are fine");
      assert.equal(
        proxy.sent.join(""),
        "conn_id\nlock é\tok/📦\n",
        "only the session id request (for reconnecting) and the good key reached the wire",
      );
    });
  });

  test(`[${dialect}] keyEncoding "sha1" sends the hex SHA-1 of keys, like the PHP client`, async () => {
    await withServer(dialect, async ({ connect, port }) => {
      await using proxy = await startProxy(port);
      const php = await connect({ port: proxy.port, keyEncoding: "sha1" });
      const raw = await connect();
      const vectors: [string, string][] = [
        ["abc", "a9993e364706816aba3e25717850c26c9cd0d89d"],
        ["", "da39a3ee5e6b4b0d3255bfef95601890afd80709"],
        ["The quick brown fox jumps over the lazy dog", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"],
      ];
      for (const [key, hex] of vectors) {
        assert.equal(await php.lock(key), true);
        assert.equal(await raw.lock(hex), false, `${JSON.stringify(key)} is ${hex} on the wire`);
      }
      assert.equal(await php.lock("a b\nunlock_all"), true, "any string is fine");
      assert.equal(await php.unlock("abc"), true);
      assert.equal(await raw.lock("a9993e364706816aba3e25717850c26c9cd0d89d"), true);
      assert.equal(
        proxy.sent[0]!.split("\n")[1],
        "lock a9993e364706816aba3e25717850c26c9cd0d89d",
      );
      assert.doesNotMatch(proxy.sent[0]!, /quick|unlock_all/);
    });
  });

  test(`[${dialect}] logger.debug gets every request and reply`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const lines: string[] = [];
      const a = await connect({ logger: { debug: (message) => lines.push(message) } });
      assert.deepEqual(lines, ["elock > conn_id", lines[1]]);
      assert.match(lines[1]!, /^elock < 200 \S+$/);
      lines.length = 0;
      await a.lock("k");
      await a.unlock("k");
      assert.equal(lines[0], "elock > lock k");
      assert.match(lines[1]!, /^elock < 200 /);
      assert.equal(lines[2], "elock > unlock k");
      assert.match(lines[3]!, /^elock < 200 /);
    });
  });
}

test("[extended] lockValue() shares a key among holders of one value", async () => {
  await withServer("extended", async ({ connect }) => {
    const a = await connect();
    const b = await connect();
    const c = await connect();
    assert.equal(await a.lockValue("schema", "v1"), true);
    assert.equal(await b.lockValue("schema", "v1"), true);
    assert.equal(await c.lockValue("schema", "v2"), false);
    const v2 = c.lockValue("schema", "v2", { timeout: 10_000 });
    await a.unlock("schema");
    await b.unlock("schema");
    assert.equal(await v2, true);
    const held = await c.acquire("other", { value: "v9" });
    assert.equal(held.value, "v9");
    assert.equal(await a.lockValue("other", "v9"), true);
  });
});

test("[extended] lock() of a value-locked key is an UnexpectedResponseError with the reply", async () => {
  await withServer("extended", async ({ connect }) => {
    const a = await connect();
    const b = await connect();
    await a.lockValue("k", "v");
    await assert.rejects(b.lock("k"), (error: unknown) => {
      assert.ok(error instanceof UnexpectedResponseError);
      assert.equal(error.command, "lock k");
      assert.equal(error.reply, "500 Internal server error");
      return true;
    });
  });
});

test("[extended] debug() parses sessions, locks and waiting requests", async () => {
  await withServer("extended", async ({ connect }) => {
    const a = await connect();
    const b = await connect();
    const aid = sessionName(await a.sessionId());
    const bid = sessionName(await b.sessionId());
    await a.lock("k");
    await a.lockValue("v", "blue");
    const waiting = b.lock("k", { timeout: 10_000 });
    await until(async () => (await a.debug()).requests.length === 1, "b's wait shows");
    const info = await a.debug();
    assert.equal(info.sessions.length, 2);
    assert.deepEqual(info.locks, [
      { key: "k", holders: [aid], value: null },
      { key: "v", holders: [aid], value: "blue" },
    ]);
    assert.deepEqual(info.requests, [{ session: bid, key: "k" }]);
    await a.unlock("k");
    assert.equal(await waiting, true);
  });
});

test("[original] lockValue() and debug() need an extended server: UnsupportedCommandError", async () => {
  await withServer("original", async ({ connect }) => {
    const a = await connect();
    await assert.rejects(a.lockValue("k", "v"), (error: unknown) => {
      assert.ok(error instanceof UnsupportedCommandError);
      assert.equal(error.command, "lock_value");
      assert.equal(error.reply, '400 Unknown command: "lock_value"');
      return true;
    });
    await assert.rejects(a.debug(), UnsupportedCommandError);
    await assert.rejects(a.acquire("k", { value: "v" }), UnsupportedCommandError);
    assert.equal(await a.lock("k"), true, "still in step");
  });
});

test("ELockClient.connect() checks its options", async () => {
  await assert.rejects(ELockClient.connect({ port: 0 }), RangeError);
  await assert.rejects(ELockClient.connect({ port: 70000 }), RangeError);
  await assert.rejects(ELockClient.connect({ host: "" }), TypeError);
  await assert.rejects(
    ELockClient.connect({ keyEncoding: "md5" as unknown as "raw" }),
    TypeError,
  );
  await assert.rejects(ELockClient.connect({ commandTimeout: 0 }), RangeError);
  await assert.rejects(ELockClient.connect({ releaseTimeout: -5 }), RangeError);
});

test("ELockClient.connect() rejects when nothing listens, and with the reason when aborted", async () => {
  const port = await closedPort();
  await assert.rejects(ELockClient.connect({ port }), (error: unknown) => {
    assert.ok(error instanceof ConnectionClosedError);
    assert.match(error.message, new RegExp(`^Cannot connect to 127\\.0\\.0\\.1:${port}: `));
    assert.ok(error.cause !== undefined);
    return true;
  });
  const controller = new AbortController();
  const reason = new Error("gave up");
  controller.abort(reason);
  await assert.rejects(
    ELockClient.connect({ port, signal: controller.signal }),
    (e) => e === reason,
  );
});
