/**
 * Hostile input against the bundled server over real TCP, in both dialects:
 * wrong arities, malformed numbers, stray whitespace, overlong lines, binary
 * keys, half-sent lines, resets while the server writes, a thousand dropped
 * connections and deep pipelining. Every test also checks that a
 * well-behaved session's locks survive and that the server still answers.
 * Everything runs on the memory store and again on the etcd store (one etcd
 * for the file, a prefix per server).
 *
 * @module
 */

import assert from "node:assert/strict";
import { after, test } from "node:test";
import { type ELockServer, type ServerOptions, startServer as start } from "../src/server/mod.ts";
import { type EtcdCluster, startEtcd } from "./support/etcd.ts";
import type { LineClient } from "./support/line_client.ts";
import {
  Clients,
  DIALECTS,
  Guard,
  readStats,
  type Replies,
  repliesOf,
  sessionId,
  stats,
  until,
} from "./support/hostile.ts";
import { sleep } from "./support/wait.ts";
import { sessionName } from "../mod.ts";

/** For the tests that open many connections or move megabytes (Bun's default is 5 s). */
const SLOW = { timeout: 60_000 };

type Store = "memory" | "etcd";
const STORES: readonly Store[] = ["memory", "etcd"];

/** One etcd for the servers of the etcd store; each server has a prefix of its own. */
let etcd: Promise<EtcdCluster> | null = null;
let prefixes = 0;
after(async () => {
  if (etcd !== null) await (await etcd).stop();
});

/** `startServer` on `store`. */
function serverOn(store: Store): (options: ServerOptions) => Promise<ELockServer> {
  if (store === "memory") return start;
  return async (options) => {
    etcd ??= startEtcd();
    return await start({
      ...options,
      store: "etcd",
      etcdEndpoints: (await etcd).endpoints,
      etcdPrefix: `hostile-${prefixes++}/`,
    });
  };
}

/** The first word of a command line, as the server names it in `Unknown command`. */
function firstWord(line: string): string {
  return line.replace(/\r$/, "").split(" ")[0]!;
}

/** Sends `line` and asserts the reply, then that the connection still answers. */
async function expectReply(
  client: LineClient,
  r: Replies,
  line: string,
  expected: string | RegExp,
): Promise<void> {
  const reply = await client.request(line);
  if (typeof expected === "string") {
    assert.equal(reply, expected, `reply to ${JSON.stringify(line)}`);
  } else {
    assert.match(reply, expected, `reply to ${JSON.stringify(line)}`);
  }
  assert.equal(client.ended, false, `connection closed after ${JSON.stringify(line)}`);
  assert.match(await client.request("conn_id"), r.idReply, `usable after ${JSON.stringify(line)}`);
}

/** Asserts that `key` is free: another client takes it and gives it back. */
async function assertFree(clients: Clients, r: Replies, key: string): Promise<void> {
  const other = await clients.connect();
  try {
    assert.equal(await other.request(`lock ${key}`), r.acquired, `${JSON.stringify(key)} is free`);
    assert.equal(await other.request(`unlock ${key}`), r.unlocked);
  } finally {
    await clients.close(other);
  }
}

/** Writes `bytes` in `chunkSize` pieces, waiting for each to be taken. */
async function writeChunked(client: LineClient, bytes: Uint8Array, chunkSize: number) {
  for (let at = 0; at < bytes.length; at += chunkSize) {
    await client.write(bytes.subarray(at, Math.min(bytes.length, at + chunkSize)));
  }
}

function latin1(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/**
 * A client queues a wait, pipelines `behind` after it (a waiting lock is a
 * barrier, so those commands pile up in the server), then leaves by each of
 * `hows`. The server must notice, withdraw the wait, and hand the key to the
 * next client rather than to the departed one.
 */
async function leaveWhileWaiting(
  startServer: (options: ServerOptions) => Promise<ELockServer>,
  r: Replies,
  behind: string,
  hows: readonly ("reset" | "close")[],
): Promise<void> {
  await using server = await startServer({ port: 0, dialect: r.dialect });
  await using clients = new Clients(server.port);
  const guard = await Guard.start(clients, r);
  const holder = await clients.connect();
  const holderId = await sessionId(holder, r);
  const third = await clients.connect();
  try {
    for (const how of hows) {
      const key = `w-${how}`;
      assert.equal(await holder.request(`lock ${key}`), r.acquired);
      const leaver = await clients.connect();
      leaver.send(`conn_id\nlock ${key} 60\n${behind}`.slice(0, -1));
      assert.match(await leaver.line(), r.idReply); // the wait is queued right after
      await sleep(200); // lets the server take in what it will of the commands behind
      if (how === "reset") clients.reset(leaver);
      else await clients.close(leaver);
      await until(
        `server connections after the waiting client's ${how}`,
        () => Promise.resolve(server.connections),
        (n) => n === clients.size,
        5_000,
      );
      if (r.dialect === "extended") {
        third.send("debug");
        const requests: string[] = [];
        for (let line = await third.line(); line !== "END"; line = await third.line()) {
          if (line.startsWith("REQUEST ")) requests.push(line);
        }
        assert.deepEqual(requests, [], `no waiter left after the ${how}`);
      }
      // The key goes to whoever asks next, not to the departed waiter.
      assert.equal(await holder.request(`unlock ${key}`), r.unlocked);
      assert.equal(await third.request(`lock ${key}`), r.acquired, `lock ${key} after the ${how}`);
      assert.equal(await third.request(`unlock ${key}`), r.unlocked);
    }
  } finally {
    // Lets a waiter the server failed to withdraw go ahead, so the server can close.
    holder.send("unlock_all");
  }
  assert.equal(await holder.line(), r.unlockAll);
  assert.equal(await third.request(`lock ${guard.keys[0]}`), r.unavailable(guard.id));
  assert.equal(await sessionId(holder, r), holderId);
  await guard.verify();
}

for (const store of STORES) {
  for (const dialect of DIALECTS) {
    const r = repliesOf(dialect);
    const extended = dialect === "extended";
    const startServer = serverOn(store);
    const name = store === "memory" ? dialect : `${dialect} (etcd store)`;

    test(`${name} server answers every command with a wrong arity with an unknown-command error`, async () => {
      await using server = await startServer({ port: 0, dialect });
      await using clients = new Clients(server.port);
      const guard = await Guard.start(clients, r);
      const c = await clients.connect();
      const id = await sessionId(c, r);
      assert.equal(await c.request("lock mine"), r.acquired);

      const lines = [
        "lock",
        "lock a 1 x",
        "lock a 1 x y",
        "lock_value",
        "lock_value a",
        "lock_value a v 1 x",
        "lock_value a v 1 x y",
        "unlock",
        "unlock mine x",
        "unlock mine x y",
        "unlock_all mine",
        "unlock_all mine x",
        "conn_id 1 2",
        "conn_id 1 2 3",
        "set_timeout",
        "set_timeout 0 0",
        "set_timeout 0 0 0",
        "stats x",
        "stats x y",
        "debug x",
        "debug x y",
        "quit x",
        "quit x y",
        "LOCK a",
        "Lock a",
        "lock\ta",
        "bogus",
        "bogus a b",
      ];
      // Unknown commands in the original dialect, whatever their arity.
      if (!extended) lines.push("lock_value a v", "lock_value a v 1", "debug");
      for (const line of lines) await expectReply(c, r, line, r.unknown(firstWord(line)));

      // Nothing was locked, unlocked, resumed or quit by those lines.
      assert.equal(await sessionId(c, r), id);
      const other = await clients.connect();
      assert.equal(await other.request("lock mine"), r.unavailable(id));
      for (const key of ["a", "x", "v", "1"]) {
        assert.equal(await other.request(`lock ${key}`), r.acquired, `key ${key} was free`);
      }
      assert.equal(await other.request("unlock_all"), r.unlockAll);
      assert.equal((await stats(c, r)).locks, guard.keys.length + 1);
      // The well-formed quit still does what it should.
      assert.equal(await c.request("quit"), r.quit);
      if (extended) {
        assert.equal(await other.request("lock mine"), r.acquired);
      } else {
        assert.equal(await c.waitEnd(), true, "original quit closes the connection");
      }
      await guard.verify();
    });

    test(`${name} server answers malformed wait times with an error and keeps the connection`, async () => {
      await using server = await startServer({ port: 0, dialect });
      await using clients = new Clients(server.port);
      const guard = await Guard.start(clients, r);
      const c = await clients.connect();
      const bad = [
        "abc",
        "-1",
        "1.5",
        "0.5",
        "1e3",
        "0x10",
        "+1",
        "1_0",
        "99999999999999999999",
        "2147484",
        "4294967296",
        "Infinity",
        "NaN",
        "1\t",
        "\x001",
      ];
      for (const wait of bad) {
        // A held key: the error comes at once, with no wait and no 409.
        await expectReply(c, r, `lock guard-a ${wait}`, r.error);
        // A free key: the error comes and the key is not taken.
        await expectReply(c, r, `lock free-w ${wait}`, r.error);
        if (extended) {
          await expectReply(c, r, `lock_value guard-a v ${wait}`, r.error);
          await expectReply(c, r, `lock_value free-v v ${wait}`, r.error);
        }
      }
      assert.equal((await stats(c, r)).locks, guard.keys.length);
      await assertFree(clients, r, "free-w");
      if (extended) await assertFree(clients, r, "free-v");
      // The largest wait accepted, and a zero wait.
      await expectReply(c, r, "lock free-w 2147483", r.acquired);
      await expectReply(c, r, "lock guard-a 0", r.unavailable(guard.id));
      if (extended) await expectReply(c, r, "lock_value free-v v 2147483", r.acquired);
      await guard.verify();
    });

    test(`${name} server answers malformed set_timeout values with an error and keeps the timeout`, async () => {
      await using server = await startServer({ port: 0, dialect });
      await using clients = new Clients(server.port);
      const guard = await Guard.start(clients, r);
      const bad = [
        "abc",
        "-1",
        "1.5",
        "0.5",
        "1e3",
        "0x10",
        "+1",
        "99999999999999999999",
        "2147483648",
        "4294967296",
        "Infinity",
        "0\t",
      ];
      // set_timeout 0 followed by malformed values: the session keeps 0, so its
      // lock goes the moment it disconnects.
      const zero = await clients.connect();
      const zeroId = await sessionId(zero, r);
      assert.equal(await zero.request("set_timeout 0"), r.setTimeout);
      for (const value of bad) await expectReply(zero, r, `set_timeout ${value}`, r.error);
      assert.equal(await zero.request("lock zero-key"), r.acquired);

      // Default timeout followed by malformed values: the session keeps 30000.
      const dflt = await clients.connect();
      const dfltId = await sessionId(dflt, r);
      for (const value of bad) await expectReply(dflt, r, `set_timeout ${value}`, r.error);
      assert.equal(await dflt.request("lock default-key"), r.acquired);
      if (extended) {
        dflt.send("debug");
        assert.equal(await dflt.line(), "200 DEBUG");
        const timeouts = new Map<string, number>();
        for (let line = await dflt.line(); line !== "END"; line = await dflt.line()) {
          if (!line.startsWith("SESSION ")) continue;
          const session = JSON.parse(line.slice(8)) as { id: unknown; disposeTimeout: number };
          timeouts.set(String(session.id), session.disposeTimeout);
        }
        // debug names sessions by their public names.
        assert.equal(timeouts.get(sessionName(zeroId)), 0);
        assert.equal(timeouts.get(sessionName(dfltId)), 30000);
      }

      await clients.close(zero);
      await clients.close(dflt);
      const probe = await clients.connect();
      await until(
        "STAT locks after set_timeout 0 client left",
        async () => (await stats(probe, r)).locks,
        (locks) => locks === guard.keys.length + 1,
      );
      await assertFree(clients, r, "zero-key");
      assert.equal(await probe.request("lock default-key"), r.unavailable(dfltId));

      // Large but valid release timeouts are accepted.
      for (const value of ["0", "2147484", "2147483647"]) {
        await expectReply(probe, r, `set_timeout ${value}`, r.setTimeout);
      }
      await guard.verify();
    });

    test(`${name} server answers empty, blank and badly spaced lines with an error`, async () => {
      await using server = await startServer({ port: 0, dialect });
      await using clients = new Clients(server.port);
      const guard = await Guard.start(clients, r);
      const c = await clients.connect();
      const id = await sessionId(c, r);
      assert.equal(await c.request("lock mine"), r.acquired);
      const lines = [
        "",
        " ",
        "   ",
        "\t",
        "\r",
        "\r\r",
        "lock  a",
        "lock a ",
        " lock a",
        "lock a  1",
        "lock a 1 ",
        "unlock  mine",
        "unlock mine ",
        "unlock_all ",
        " unlock_all",
        "conn_id ",
        " conn_id",
        "set_timeout  0",
        "set_timeout 0 ",
        "stats ",
        "quit ",
        " quit",
      ];
      if (extended) lines.push("lock_value a  v", "lock_value a v ", "debug ");
      for (const line of lines) await expectReply(c, r, line, r.unknown(firstWord(line)));

      // Several empty lines in one write get one error each, in order.
      await c.write("\n\r\n \nconn_id\n");
      for (const line of ["", "", " "]) assert.equal(await c.line(), r.unknown(firstWord(line)));
      assert.equal(await c.line(), r.line(`200 ${id}`));

      assert.equal(await sessionId(c, r), id);
      assert.equal((await stats(c, r)).locks, guard.keys.length + 1);
      await assertFree(clients, r, "a");
      const other = await clients.connect();
      assert.equal(await other.request("lock mine"), r.unavailable(id));
      await guard.verify();
    });

    test(
      `${name} server answers a 10 MiB line with one error and serves the next command`,
      SLOW,
      async () => {
        await using server = await startServer({ port: 0, dialect });
        await using clients = new Clients(server.port);
        const guard = await Guard.start(clients, r);
        const c = await clients.connect();
        const id = await sessionId(c, r);

        const huge = new Uint8Array(10 * 1024 * 1024).fill(0x78); // "x"
        huge.set(latin1("lock huge-"));
        await writeChunked(c, huge, 64 * 1024);
        await c.write("\nlock after-huge\n");
        assert.equal(await c.line(10_000), r.lineTooLong);
        assert.equal(await c.line(), r.acquired);
        assert.equal(await sessionId(c, r), id);

        // In one write, overlong lines between short ones (one with \r\n).
        await c.write(
          `conn_id\nlock ${"y".repeat(70_000)}\nconn_id\n${
            "z".repeat(200_000)
          }\r\nunlock after-huge\n`,
        );
        assert.equal(await c.line(), r.line(`200 ${id}`));
        assert.equal(await c.line(), r.lineTooLong);
        assert.equal(await c.line(), r.line(`200 ${id}`));
        assert.equal(await c.line(), r.lineTooLong);
        assert.equal(await c.line(), r.unlocked);

        // A 10 MiB line in one write.
        await c.write(huge);
        await c.write("\nconn_id\n");
        assert.equal(await c.line(10_000), r.lineTooLong);
        assert.equal(await c.line(), r.line(`200 ${id}`));

        assert.equal((await stats(c, r)).locks, guard.keys.length);
        await guard.verify();
      },
    );

    test(`${name} server accepts a line of exactly maxLineLength bytes and rejects one byte more`, async () => {
      await using server = await startServer({ port: 0, dialect, maxLineLength: 1024 });
      await using clients = new Clients(server.port);
      const guard = await Guard.start(clients, r);
      const c = await clients.connect();
      const fits = `lock ${"f".repeat(1019)}`; // 1024 bytes
      const over = `lock ${"o".repeat(1020)}`; // 1025 bytes
      assert.equal(fits.length, 1024);
      assert.equal(over.length, 1025);
      const base = guard.keys.length;

      const check = async (how: string, send: (line: string, end: string) => Promise<void>) => {
        for (const end of ["\n", "\r\n"]) {
          const label = `${how}, ${JSON.stringify(end)}`;
          await send(fits, end);
          assert.equal(await c.line(), r.acquired, `1024 bytes, ${label}`);
          assert.equal((await stats(c, r)).locks, base + 1, label);
          assert.equal(await c.request("unlock_all"), r.unlockAll);
          await send(over, end);
          assert.equal(await c.line(), r.lineTooLong, `1025 bytes, ${label}`);
          assert.equal((await stats(c, r)).locks, base, label);
          assert.match(await c.request("conn_id"), r.idReply);
        }
      };
      await check("one write", (line, end) => c.write(line + end));
      await check("split writes", async (line, end) => {
        // Pieces sent apart, so the server very likely reads them separately,
        // including a `\r` and its `\n` in different reads.
        for (const piece of [line.slice(0, 500), line.slice(500), ...end]) {
          await c.write(piece);
          await sleep(5);
        }
      });
      // A line of exactly the limit followed by another command in the same write.
      await c.write(`${fits}\nconn_id\n`);
      assert.equal(await c.line(), r.acquired);
      assert.match(await c.line(), r.idReply);
      assert.equal(await c.request("unlock_all"), r.unlockAll);
      await guard.verify();
    });

    test(`${name} server accepts \\r\\n line ends`, async () => {
      await using server = await startServer({ port: 0, dialect });
      await using clients = new Clients(server.port);
      const guard = await Guard.start(clients, r);
      const a = await clients.connect();
      const b = await clients.connect();
      await a.write("conn_id\r\n");
      const match = r.idReply.exec(await a.line());
      assert.ok(match);
      const aId = match[1]!;
      await a.write("lock crlf\r\n");
      assert.equal(await a.line(), r.acquired);
      // The key is "crlf", not "crlf\r".
      assert.equal(await b.request("lock crlf"), r.unavailable(aId));
      assert.equal(await b.request("lock crlf\r"), r.unavailable(aId));
      // Mixed line ends in one write.
      await a.write("conn_id\r\nconn_id\nlock crlf 0\r\nunlock crlf\r\n");
      assert.equal(await a.line(), r.line(`200 ${aId}`));
      assert.equal(await a.line(), r.line(`200 ${aId}`));
      assert.equal(await a.line(), r.acquired);
      assert.equal(await a.line(), r.unlocked);
      assert.equal(await b.request("lock crlf"), r.acquired);
      assert.equal(await b.request("unlock crlf"), r.unlocked);
      await guard.verify();
    });

    test(`${name} server treats binary bytes in a key as one key`, async () => {
      await using server = await startServer({ port: 0, dialect });
      await using clients = new Clients(server.port);
      const guard = await Guard.start(clients, r);
      const a = await clients.connect();
      const b = await clients.connect();
      const aId = await sessionId(a, r);
      const bId = await sessionId(b, r);

      let all = "";
      for (let byte = 0; byte < 256; byte++) {
        if (byte !== 0x20 && byte !== 0x0a) all += String.fromCharCode(byte);
      }
      const keys = [
        `k${all}z`,
        `${all}z`,
        "\x00",
        "\xff",
        "\x00\xff\x00",
        "\xc3\x28", // invalid UTF-8
        "\xed\xa0\x80", // an encoded surrogate
        "\xf8\x88\x80\x80\x80", // a 5-byte form
        "a\xffb",
        "a\xfeb", // would collide with a\xffb if decoded lossily as UTF-8
        "\xc3\xa9", // é in UTF-8
        "\xe9", // é in Latin-1
        "tab\tkey",
        "cr\rin\rkey",
        "\x7f\x1b[0m",
      ];
      for (const key of keys) {
        const label = JSON.stringify(key);
        assert.equal(await a.request(`lock ${key}`), r.acquired, `a locks ${label}`);
        assert.equal(await b.request(`lock ${key}`), r.unavailable(aId), `b locks ${label}`);
        assert.equal(await b.request(`unlock ${key}`), r.notYours(aId), `b unlocks ${label}`);
      }
      // All of them are distinct keys, each held once.
      assert.equal((await stats(b, r)).locks, guard.keys.length + keys.length);
      for (const key of keys) {
        const label = JSON.stringify(key);
        assert.equal(await a.request(`unlock ${key}`), r.unlocked, `a unlocks ${label}`);
        assert.equal(await b.request(`lock ${key}`), r.acquired, `b locks ${label} after`);
      }
      assert.equal((await stats(a, r)).locks, guard.keys.length + keys.length);
      assert.equal(await a.request(`lock ${keys[0]}`), r.unavailable(bId));
      assert.equal(await b.request("unlock_all"), r.unlockAll);
      assert.equal((await stats(a, r)).locks, guard.keys.length);

      if (extended) {
        // A binary value comes back byte for byte in the 409 reply.
        const value = `v${all}`;
        assert.equal(await a.request(`lock_value vk ${value}`), r.acquired);
        assert.equal(
          await b.request("lock_value vk other"),
          `409 Already locked by #${sessionName(aId)} (${value})`,
        );
        assert.equal(await b.request(`lock_value vk ${value}`), r.acquired);
        assert.equal(await b.request("lock vk"), "500 Internal server error");
      }
      await guard.verify();
    });

    test(`${name} server takes no lock from a connection that closes mid-line`, async () => {
      await using server = await startServer({ port: 0, dialect });
      await using clients = new Clients(server.port);
      const guard = await Guard.start(clients, r);

      const closer = await clients.connect();
      await closer.write("lock par");
      await clients.close(closer);

      const splitCloser = await clients.connect();
      await splitCloser.write("lock pa");
      await sleep(10);
      await splitCloser.write("r2");
      await clients.close(splitCloser);

      const resetter = await clients.connect();
      await resetter.write("lock par3");
      await sleep(10);
      clients.reset(resetter);

      const afterCommand = await clients.connect();
      await afterCommand.write("conn_id\nlock par4");
      assert.match(await afterCommand.line(), r.idReply);
      await clients.close(afterCommand);

      const c = await clients.connect();
      await until(
        "connections after the half-sent lines",
        () => Promise.resolve(server.connections),
        (n) => n === clients.size,
      );
      assert.equal((await stats(c, r)).locks, guard.keys.length);
      for (const key of ["par", "par2", "par3", "par4"]) await assertFree(clients, r, key);
      await guard.verify();
    });

    test(
      `${name} server survives clients that reset while it is writing to them`,
      SLOW,
      async () => {
        await using server = await startServer({ port: 0, dialect });
        await using clients = new Clients(server.port);
        const guard = await Guard.start(clients, r);
        const flood = "stats\n".repeat(30_000); // about 1.6 MB of replies
        // 1.2 MB of commands and about 11 MB of replies: the server still has
        // commands queued when its write fails.
        const bigFlood = "stats\n".repeat(200_000);

        const rounds = [0, 10, 50, 150, 300, 300];
        await Promise.all(rounds.map(async (delay, i) => {
          const c = await clients.connect();
          if (i % 2 === 0 || i === 5) c.socket.pause(); // replies pile up in the socket buffers
          c.socket.write(i === 5 ? bigFlood : flood, "latin1");
          if (i === 1) c.socket.write(`lock ${guard.keys[0]} 30\n`, "latin1");
          await sleep(delay);
          clients.reset(c);
        }));
        // Resets while waiting for a lock, with a few commands behind the wait.
        const waiter = await clients.connect();
        waiter.socket.pause();
        waiter.socket.write(
          `conn_id\nlock ${guard.keys[0]} 30\n${"stats\n".repeat(100)}`,
          "latin1",
        );
        await sleep(50);
        clients.reset(waiter);

        await until(
          "server connections after the resets",
          () => Promise.resolve(server.connections),
          (n) => n === clients.size,
        );
        const c = await clients.connect();
        const counters = await stats(c, r);
        assert.equal(counters.locks, guard.keys.length);
        assert.equal(counters.monitoring, counters.clients);
        if (extended) {
          c.send("debug");
          const lines: string[] = [];
          for (let line = await c.line(); line !== "END"; line = await c.line()) lines.push(line);
          assert.equal(lines[0], "200 DEBUG");
          assert.deepEqual(lines.filter((line) => line.startsWith("REQUEST ")), []);
        }
        await guard.verify();
      },
    );

    test(
      `${name} server withdraws the wait of a client that leaves with 1,100 commands queued behind it`,
      SLOW,
      () => leaveWhileWaiting(startServer, r, "conn_id\n".repeat(1100), ["reset", "close"]),
    );

    test(
      `${name} server withdraws the wait of a client that resets with 2 MiB of commands queued behind it`,
      SLOW,
      () => leaveWhileWaiting(startServer, r, "conn_id\n".repeat(2 * 1024 * 1024 / 8), ["reset"]),
    );

    test(
      `${name} server shuts down while a client waits with 2 MiB of commands queued behind the wait`,
      SLOW,
      async () => {
        await using server = await startServer({ port: 0, dialect });
        await using clients = new Clients(server.port);
        const guard = await Guard.start(clients, r);
        const waiter = await clients.connect();
        waiter.send(
          `conn_id\nlock ${guard.keys[0]} 8\n${"conn_id\n".repeat(262_144)}`.slice(0, -1),
        );
        assert.match(await waiter.line(), r.idReply);
        await guard.verify();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const closed = await Promise.race([
          server.close().then(() => true),
          new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), 5_000)),
        ]);
        clearTimeout(timer);
        assert.equal(closed, true, "server.close() did not finish while a client waited");
      },
    );

    test(`${name} server shuts down while a client does not read its replies`, SLOW, async () => {
      await using server = await startServer({ port: 0, dialect });
      await using clients = new Clients(server.port);
      const guard = await Guard.start(clients, r);
      const c = await clients.connect();
      c.socket.pause();
      c.socket.write("stats\n".repeat(30_000), "latin1");
      await sleep(100);
      await guard.verify();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const closed = await Promise.race([
        server.close().then(() => true),
        new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), 15_000)),
      ]);
      clearTimeout(timer);
      assert.equal(closed, true, "server.close() did not finish");
      c.socket.resume();
      assert.equal(await c.waitEnd(10_000), true, "the server closed the connection");
    });

    test(
      `${name} server survives 1,000 connections that lock and drop abruptly`,
      SLOW,
      async () => {
        await using server = await startServer({ port: 0, dialect });
        await using clients = new Clients(server.port);
        const guard = await Guard.start(clients, r, ["guard-a", "guard-b", "mass-keep"]);
        const total = 1000;
        const batch = 100;
        // Every fourth connection keeps the default release timeout (30 s).
        const keepsDefault = (i: number) => i % 4 === 3;
        const mass: LineClient[] = [];
        for (let start = 0; start < total; start += batch) {
          const opened = await Promise.all(
            Array.from({ length: Math.min(batch, total - start) }, async (_, j) => {
              const i = start + j;
              const c = await clients.connect();
              if (!keepsDefault(i)) assert.equal(await c.request("set_timeout 0"), r.setTimeout);
              assert.equal(await c.request(`lock mass-${i}`), r.acquired);
              return c;
            }),
          );
          mass.push(...opened);
        }
        const probe = await clients.connect();
        assert.equal((await stats(probe, r)).locks, guard.keys.length + total);
        assert.equal(await probe.request("lock mass-keep"), r.unavailable(guard.id));

        // Drop them all: half reset, half closed, in batches.
        for (let start = 0; start < total; start += batch) {
          await Promise.all(
            mass.slice(start, start + batch).map((c, j) => {
              if ((start + j) % 2 === 0) {
                clients.reset(c);
                return Promise.resolve();
              }
              return clients.close(c);
            }),
          );
        }
        const kept = Array.from({ length: total }, (_, i) => i).filter(keepsDefault).length;
        await until(
          "STAT locks after the drop",
          async () => (await stats(probe, r)).locks,
          (locks) => locks === guard.keys.length + kept,
        );
        await until(
          "server connections after the drop",
          () => Promise.resolve(server.connections),
          (n) => n === clients.size,
        );
        for (const i of [0, 1, 2, 3, 4, 5, 6, 7, 998, 999]) {
          const expected = keepsDefault(i) ? /^409 / : /^200 /;
          assert.match(await probe.request(`lock mass-${i}`), expected, `lock mass-${i}`);
        }
        assert.equal(await probe.request("unlock_all"), r.unlockAll);
        await guard.verify();
      },
    );

    test(`${name} server answers 1,000 pipelined commands in one write, in order`, async () => {
      await using server = await startServer({ port: 0, dialect });
      await using clients = new Clients(server.port);
      const guard = await Guard.start(clients, r);
      const c = await clients.connect();
      const id = await sessionId(c, r);

      const commands: string[] = [];
      const expected: string[] = [];
      for (let i = 0; i < 1000; i++) {
        if (i % 100 === 99) {
          commands.push("stats");
          continue; // checked separately: five lines
        }
        switch (i % 5) {
          case 0:
            commands.push(`lock p${i}`);
            expected.push(r.acquired);
            break;
          case 1:
            commands.push(`lock ${guard.keys[0]}`);
            expected.push(r.unavailable(guard.id));
            break;
          case 2:
            commands.push(`unlock p${i - 2}`);
            expected.push(r.unlocked);
            break;
          case 3:
            commands.push(`bogus${i}`);
            expected.push(r.unknown(`bogus${i}`));
            break;
          default:
            commands.push("conn_id");
            expected.push(r.line(`200 ${id}`));
        }
      }
      await c.write(commands.join("\n") + "\n");
      let next = 0;
      for (let i = 0; i < commands.length; i++) {
        if (commands[i] === "stats") {
          const counters = await readStats(c, r);
          assert.equal(counters.locks, guard.keys.length, `stats as command ${i}`);
          continue;
        }
        assert.equal(await c.line(), expected[next++], `reply to command ${i}: ${commands[i]}`);
      }
      assert.equal(next, expected.length);
      assert.equal(await sessionId(c, r), id);
      await guard.verify();
    });
  }
}
