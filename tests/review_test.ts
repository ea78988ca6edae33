/**
 * Adversarial review of the redesigned client (ledger, session, supervisor,
 * local queue, pool): interleavings that lose mutual exclusion, leak a key,
 * or leave a handle believing after the server released its key.
 *
 * Written against the public API, with the bundled server, the fault proxy
 * and probes (independent clients straight on the server). Each test names
 * the interleaving it builds; a failure message says which promise broke.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ELockClient } from "../mod.ts";
import { DIALECTS } from "./support/client_server.ts";
import { leakCheckedTest } from "./support/leak_checked.ts";
import {
  aborted,
  happened,
  outcome,
  record,
  sentAny,
  within,
  withTruth,
} from "./support/lock_truth.ts";
import { startErlangLikeServer } from "./support/erlang_like_server.ts";
import { startProxy, startScriptedServer } from "./support/proxy.ts";
import { until } from "./support/wait.ts";

for (const dialect of DIALECTS) {
  // R1. A handle's release() whose unlock is on the wire when the session is lost.
  leakCheckedTest(
    `R1: a release() in flight when the session is lost resolves false, not true [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe, proxy, restart }) => {
        const client = await connect({ releaseTimeout: 1000 });
        const events = record(client);
        const handle = await client.acquire("k");
        proxy.stall(); // the unlock is written but never reaches the server
        const releasing = handle.release();
        await until(() => sentAny(proxy, /(^|\n)unlock k\n/), "unlock k on the wire");
        await restart(); // every session is gone: k is free, the resume is refused
        const p = await probe();
        assert.equal(await p.lock("k", { timeout: 5000 }), true, "k is free on the new server");
        await happened(events, "sessionlost");
        const released = await within(releasing, 20_000, "the release");
        assert.equal(
          released,
          false,
          "release() resolved true though the session was lost before the server saw the unlock " +
            "(the retried unlock of the new session answered it), while a probe holds k",
        );
        await p.unlock("k");
      }),
  );

  // R2. The lease ran out once on a connection that stayed up; a lock taken afterwards.
  leakCheckedTest(
    `R2: after a lease expiry on a live connection, a later handle is still lost by the time the server frees its key (half-dead link) [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe, proxy }) => {
        const client = await connect({
          releaseTimeout: 1000,
          heartbeat: false,
          commandTimeout: 60_000,
          poolSize: 1,
        });
        const first = await client.acquire("a");
        await within(aborted(first.signal), 10_000, "the first handle lost at its lease");
        await client.stats(); // the unlock_all sent at the expiry is answered
        const second = await client.acquire("b");
        assert.equal(second.lost, false);
        const p = await probe();
        proxy.halfDead(); // the server sees the connection end; the client sees nothing
        assert.equal(await p.lock("b", { timeout: 15_000 }), true, "the server released b");
        await outcome(within(aborted(second.signal), 5000, "the second handle lost"));
        assert.equal(
          second.lost,
          true,
          "the server freed b (a probe holds it) while the second handle still believes: " +
            "the lease is not watched again after the first expiry",
        );
        await p.unlock("b");
      }),
  );

  leakCheckedTest(
    `R3: after a lease expiry on a live connection, a later handle is lost when the next reconnect starts a new session [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe, proxy }) => {
        const client = await connect({
          releaseTimeout: 1000,
          heartbeat: false,
          commandTimeout: 60_000,
          poolSize: 1,
        });
        const events = record(client);
        const first = await client.acquire("a");
        await within(aborted(first.signal), 10_000, "the first handle lost at its lease");
        await client.stats();
        const second = await client.acquire("b");
        const lostBefore = events.filter((e) => e.type === "sessionlost").length;
        const p = await probe();
        proxy.delay({ toServer: 400 }); // the reconnection takes a while (a slow network)
        proxy.cut();
        // The server frees b at the drop plus the release timeout: after the last reply plus the lease.
        assert.equal(await p.lock("b", { timeout: 15_000 }), true, "the old session released b");
        assert.equal(
          second.lost,
          true,
          `the client started a new session (no resume: the expired flag stayed set) without ` +
            `telling the second handle; sessionlost events after the cut: ${
              events.filter((e) => e.type === "sessionlost").length - lostBefore
            }; a probe holds b`,
        );
        await p.unlock("b");
      }),
  );

  // R4. A raw lock() in flight on the client's own session, then acquire() of the same key.
  leakCheckedTest(
    `R4: acquire() called while a raw lock() of the same key is in flight does not re-enter it [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect }) => {
        const client = await connect();
        const raw = client.lock("k");
        const handle = outcome(client.acquire("k", { timeout: 300 }));
        assert.equal(await raw, true);
        const got = await handle;
        const both = got.value !== undefined && !got.value.lost;
        assert.ok(
          !both,
          "the raw lock() and the handle both hold k on one session (acquire() shared the " +
            "session whose raw lock was not yet answered)",
        );
        if (got.value) await got.value.release();
        await client.unlock("k");
      }),
  );

  // R5. command("unlock k") under a handle of the client's own session.
  leakCheckedTest(
    `R5: command("unlock k") under a handle of the client's session never leaves it believing while a probe gets k [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe }) => {
        const client = await connect();
        const p = await probe();
        const handle = await client.acquire("k"); // on the client's own session (the pool's first)
        const reply = await client.command("unlock k");
        assert.equal(reply.code, 200);
        const probeGot = await p.lock("k");
        assert.ok(
          !probeGot || handle.lost,
          "a probe got k after command('unlock k') while the handle still believes it holds it",
        );
        if (probeGot) await p.unlock("k");
        await outcome(handle.release());
      }),
  );

  // R6. close() with a handle held: the server releases the key after the release timeout.
  leakCheckedTest(
    `R6: a handle held across client.close() is lost by the time the server frees its key [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe }) => {
        const client = await connect({ releaseTimeout: 1000 });
        const handle = await client.acquire("k");
        await client.close();
        const p = await probe();
        assert.equal(await p.lock("k", { timeout: 15_000 }), true, "the server released k");
        assert.equal(
          handle.lost,
          true,
          "the server freed k after close() (a probe holds it) while the handle's lost is false " +
            "and its signal never aborts",
        );
        // Lost, so its release sends nothing (the client is closed anyway) and resolves false.
        assert.equal(await handle.release(), false);
        await p.unlock("k");
      }),
  );
}

// R7. A late grant's release (unlock k) is answered in the same read as a live caller's grant of
// k sent right behind it. The bundled server answers each line on its own and the proxy cannot
// merge two replies into one segment, so a scripted server (original replies) writes both at
// once, as any server or network may deliver them.
leakCheckedTest(
  "R7: a late grant's release answered in the same read as a live grant of the key does not leak it [original, scripted server]",
  async () => {
    const lines: string[] = [];
    let heldUnlock: ((text: string) => void) | null = null;
    let locks = 0;
    let unlocks = 0;
    let holder = false; // the client's session holds k on this server
    const server = await startScriptedServer((line, write) => {
      lines.push(line);
      if (line === "conn_id") write("200 7\r\n");
      else if (line === "lock k") {
        locks++;
        holder = true;
        if (locks === 1) setTimeout(() => write("200 Acquired\r\n"), 200); // after the abort
        else if (heldUnlock !== null) {
          heldUnlock("200 Unlocked\r\n200 Acquired\r\n"); // both replies in one write
          heldUnlock = null;
        } else write("200 Acquired\r\n");
      } else if (line === "unlock k") {
        unlocks++;
        holder = false;
        if (unlocks === 1) heldUnlock = write; // answered together with the next lock k
        else write("200 Unlocked\r\n");
      } else write("400 Unknown command\r\n");
    });
    const client = await ELockClient.connect({ port: server.port });
    try {
      const controller = new AbortController();
      const reason = new Error("gave up");
      const late = client.lock("k", { signal: controller.signal });
      await until(() => lines.includes("lock k"), "the first lock k sent");
      controller.abort(reason);
      await assert.rejects(late, (error) => error === reason);
      await until(() => lines.includes("unlock k"), "the late grant's release sent");
      const handle = await within(client.acquire("k"), 10_000, "the live acquire");
      assert.equal(holder, true, "the server gave k to the live acquire");
      const released = await within(handle.release(), 10_000, "the release");
      assert.ok(
        released && !holder,
        `k leaked: release() resolved ${released} and sent no unlock (${
          JSON.stringify(lines)
        }): the release's reply, handled after the live grant in the same read, marked k free ` +
          "in the ledger",
      );
    } finally {
      await client.close();
      await server.close();
    }
  },
);

// R8. releaseTimeout 0 with reconnect: true: the server released everything at the drop, yet the
// client tries a resume; an original (Erlang) server answers 200 to any id.
leakCheckedTest(
  "R8: releaseTimeout 0 with reconnect on: after a drop the handle is lost, even when an original server answers the resume with 200 [original, Erlang-like server]",
  async () => {
    await using server = await startErlangLikeServer();
    await using proxy = await startProxy(server.port);
    const clients: ELockClient[] = [];
    try {
      const client = await ELockClient.connect({
        port: proxy.port,
        releaseTimeout: 0,
        reconnect: true,
      });
      clients.push(client);
      const events = record(client);
      const handle = await client.acquire("k");
      proxy.cut(); // with set_timeout 0 the server releases k the moment it sees the drop
      await happened(events, "connect");
      await within(client.stats(), 20_000, "the client back on a connection");
      const probe = await ELockClient.connect({ port: server.port, releaseTimeout: 0 });
      clients.push(probe);
      assert.equal(await probe.lock("k", { timeout: 5000 }), true, "the server released k");
      assert.equal(
        handle.lost,
        true,
        `a probe holds k while the handle still believes (events: ${
          events.map((e) => e.type).join(", ")
        }): with releaseTimeout 0 the client resumed instead of starting a new session`,
      );
    } finally {
      await Promise.allSettled(clients.map((c) => c.close()));
    }
  },
);
