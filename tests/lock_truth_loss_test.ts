/**
 * Lock truth, cases 6-10: when the lock is lost, the client knows it no
 * later than the server. The lease is counted from the last reply (6); a
 * resume an original server grants for an expired session is a lost
 * session (7); a refused resume on an original server is a lost session at
 * once (8); the command timeout does not slide while later commands are
 * written (9); `withLock` reports a lock lost under its function (10).
 *
 * Written against the public API, with the fault proxy, the bundled server
 * (restarted on the same port to lose every session), a scripted server and
 * an imitation of the Erlang server (tests/support/erlang_like_server.ts).
 * Cases 1-5 are in tests/lock_truth_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConnectionClosedError, ELockClient, SessionLostError } from "../mod.ts";
import { startServer } from "../src/server/mod.ts";
import { DIALECTS } from "./support/client_server.ts";
import { startErlangLikeServer } from "./support/erlang_like_server.ts";
import { leakCheckedTest } from "./support/leak_checked.ts";
import {
  aborted,
  deferred,
  happened,
  outcome,
  record,
  within,
  withTruth,
} from "./support/lock_truth.ts";
import { startProxy, startScriptedServer } from "./support/proxy.ts";
import { sleep } from "./support/wait.ts";

const UNLOCK_K = /(^|\n)unlock k\n/;

for (const dialect of DIALECTS) {
  // 6. Lease counted from the last reply.

  leakCheckedTest(
    `case 6: the lease is counted from the last reply: the handle is lost by the time the server frees the lock [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe, proxy }) => {
        const client = await connect({
          releaseTimeout: 2000,
          heartbeat: false,
          commandTimeout: 60_000,
        });
        const handle = await client.acquire("k");
        const p = await probe();
        proxy.halfDead(); // the server sees the connection end; the client sees nothing
        assert.equal(await p.lock("k", { timeout: 15_000 }), true, "the server released k");
        assert.equal(handle.lost, true, "the server freed k while the handle still believes");
        assert.equal(handle.signal.aborted, true);
      }),
  );

  // 10. withLock and a lost lock.

  leakCheckedTest(
    `case 10: withLock whose lock is lost midway (server restart) rejects with SessionLostError and sends no unlock [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, proxy, restart }) => {
        const client = await connect({ releaseTimeout: 1000 });
        const entered = deferred();
        const result = outcome(client.withLock("k", async (lock) => {
          entered.resolve();
          await aborted(lock.signal);
          return "done";
        }));
        await entered.promise;
        await restart();
        const { value, error } = await within(result, 15_000, "withLock settled");
        assert.ok(
          error instanceof SessionLostError,
          `withLock ${
            error === undefined ? `resolved ${JSON.stringify(value)}` : `rejected with ${error}`
          }`,
        );
        assert.notEqual(error.cause, undefined, "the SessionLostError carries no cause");
        assert.ok(carries(error.cause, "done"), "its cause does not carry fn's return value");
        await client.stats(); // anything sent after the loss is in the proxy's record
        for (const [index, text] of proxy.sent.entries()) {
          if (index > 0) {
            assert.doesNotMatch(text, UNLOCK_K, `unlock k sent on connection ${index}`);
          }
        }
      }),
  );

  leakCheckedTest(
    `case 10: withLock whose lock is lost midway (half-dead link) rejects with SessionLostError and sends no unlock [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, proxy }) => {
        const client = await connect({
          releaseTimeout: 2000,
          heartbeat: false,
          commandTimeout: 60_000,
        });
        const entered = deferred();
        let sentBeforeLoss = -1;
        const result = outcome(client.withLock("k", async (lock) => {
          entered.resolve();
          await aborted(lock.signal);
          sentBeforeLoss = proxy.sent[0]!.length;
          return "done";
        }));
        await entered.promise;
        proxy.halfDead();
        const { value, error } = await within(result, 15_000, "withLock settled");
        assert.ok(
          error instanceof SessionLostError,
          `withLock ${
            error === undefined ? `resolved ${JSON.stringify(value)}` : `rejected with ${error}`
          }`,
        );
        assert.notEqual(error.cause, undefined, "the SessionLostError carries no cause");
        assert.ok(carries(error.cause, "done"), "its cause does not carry fn's return value");
        assert.doesNotMatch(proxy.sent[0]!.slice(sentBeforeLoss), UNLOCK_K, "unlock k sent");
        for (const [index, text] of proxy.sent.entries()) {
          if (index > 0) {
            assert.doesNotMatch(text, UNLOCK_K, `unlock k sent on connection ${index}`);
          }
        }
      }),
  );

  leakCheckedTest(
    `case 10: withLock with the server gone for good rejects with SessionLostError soon after the release timeout [${dialect}]`,
    async () => {
      const server = await startServer({ port: 0, dialect });
      let client: ELockClient | null = null;
      try {
        client = await ELockClient.connect({ port: server.port, releaseTimeout: 1000 });
        const entered = deferred();
        const result = outcome(client.withLock("k", async (lock) => {
          entered.resolve();
          await aborted(lock.signal);
          return "done";
        }));
        await entered.promise;
        await server.close(); // and no server comes back: every reconnection attempt fails
        const { value, error } = await within(
          result,
          10_000,
          "withLock settled (the reconnection gives up only after the 30 s command timeout)",
        );
        assert.ok(
          error instanceof SessionLostError,
          `withLock ${
            error === undefined
              ? `resolved ${JSON.stringify(value)}`
              : `rejected with ${error}${
                error instanceof ConnectionClosedError ? " (a ConnectionClosedError)" : ""
              }`
          }`,
        );
      } finally {
        await client?.close();
        await server.close();
      }
    },
  );
}

// 7. An original server grants a resume of an expired session.

leakCheckedTest(
  "case 7: a resume an original server grants after the session expired is reported lost, and holds nothing [original, Erlang-like server]",
  async () => {
    // The bundled server refuses `conn_id` of an unknown id; the Erlang one answers 200.
    await using server = await startErlangLikeServer();
    await using proxy = await startProxy(server.port);
    const clients: ELockClient[] = [];
    const open = async (port: number, releaseTimeout: number, heartbeat?: number) => {
      const client = await ELockClient.connect({
        port,
        releaseTimeout,
        ...(heartbeat === undefined ? {} : { heartbeat }),
      });
      clients.push(client);
      return client;
    };
    try {
      const client = await open(proxy.port, 1500, 500);
      const events = record(client);
      const handle = await client.acquire("k");
      const first = await open(server.port, 0);
      const firstId = await first.sessionId();
      server.hold(); // the client's reconnection gets through only once its session expired
      proxy.halfDead();
      assert.equal(await first.lock("k", { timeout: 15_000 }), true, "the session expired");
      server.release();
      await within(client.stats(), 20_000, "the client back on a connection");
      assert.ok(
        events.some((e) => e.type === "sessionlost"),
        `no sessionlost: the 200 to conn_id of the expired session was taken for a resume (events: ${
          events.map((e) => e.type).join(", ")
        })`,
      );
      assert.equal(handle.lost, true, "the handle is not lost");
      assert.equal(server.holderOf("k"), firstId, "the probe lost k");
      const second = await open(server.port, 0);
      assert.equal(await second.lock("k"), false, "a second probe got k");
      assert.equal(await first.unlock("k"), true);
      const third = await open(server.port, 0);
      assert.equal(await third.lock("k", { timeout: 5000 }), true, "k leaked by our client");
    } finally {
      await Promise.allSettled(clients.map((client) => client.close()));
    }
  },
);

// 8. An original server refuses the resume.

leakCheckedTest(
  "case 8: a resume refused by an original server reports the session lost at the first refusal, not after the release timeout [original]",
  () =>
    withTruth("original", async ({ connect, restart, answered }) => {
      const client = await connect({ releaseTimeout: 20_000 });
      const events = record(client);
      const handle = await client.acquire("k");
      const id = await client.sessionId();
      const refusals = () =>
        answered.filter((a) => a.line === `conn_id ${id}` && a.reply.startsWith("403")).length;
      let refusalsAtLoss = -1;
      client.addEventListener("sessionlost", () => void (refusalsAtLoss = refusals()), {
        once: true,
      });
      await restart(); // the new server knows nothing of the session: 403 cannot set conn id
      await happened(events, "sessionlost", 10_000);
      const reconnects = events.slice(0, events.findIndex((e) => e.type === "sessionlost"))
        .filter((e) => e.type === "reconnect").length;
      assert.ok(
        refusalsAtLoss <= 1,
        `sessionlost after ${refusalsAtLoss} refusals (${reconnects} reconnection attempts)`,
      );
      assert.equal(handle.lost, true);
    }),
);

// 9. The command timeout does not slide.

leakCheckedTest(
  "case 9: the command timeout of an unanswered command does not slide while later commands are written",
  async () => {
    // Answers what a client sends on connecting, then nothing.
    await using server = await startScriptedServer((line, write) => {
      if (line.startsWith("set_timeout ")) write("200 timeout set\r\n");
      else if (line === "conn_id") write("200 1\r\n");
      else if (line.startsWith("conn_id ")) write("200 conn id set\r\n");
    });
    const client = await ELockClient.connect({
      port: server.port,
      commandTimeout: 500,
      heartbeat: false,
      reconnect: false,
    });
    const later: Promise<unknown>[] = [];
    try {
      const events = record(client);
      let failure: { error: unknown } | null = null;
      const first = outcome(client.stats()).then(({ error }) => void (failure = { error }));
      const dropped = () => events.some((e) => e.type === "disconnect");
      for (let i = 0; i < 50 && failure === null && !dropped(); i++) {
        await sleep(100);
        later.push(outcome(client.stats()));
      }
      const seen = failure as { error: unknown } | null;
      assert.ok(
        seen !== null || dropped(),
        "still waiting for the first stats after 50 later commands 100 ms apart: the command timeout slid",
      );
      if (seen !== null) {
        assert.ok(seen.error instanceof ConnectionClosedError, `rejected with ${seen.error}`);
      }
      await client.close();
      await first;
    } finally {
      await client.close();
      await Promise.all(later);
    }
  },
);

/** Whether `value` is `target`, or holds it in an own property (3 levels deep). */
function carries(value: unknown, target: unknown, depth = 3): boolean {
  if (value === target) return true;
  if (depth === 0 || typeof value !== "object" || value === null) return false;
  const values = value instanceof Map
    ? [...value.values()]
    : Object.getOwnPropertyNames(value).map((name) => (value as Record<string, unknown>)[name]);
  return values.some((v) => carries(v, target, depth - 1));
}
