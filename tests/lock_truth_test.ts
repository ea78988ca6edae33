/**
 * Lock truth, cases 1-5: what the client believes it holds is what the
 * server says it holds. A late grant's release must not free a newer grant
 * of the same key (1); a late grant must not leak (2); a lock lost with the
 * connection and dropped by its deadline or signal must not leak (3); a lost
 * handle's release must not free a newer session's lock (4); the calls of
 * one client exclude each other like calls of different clients (5).
 *
 * Written against the public API. The schedules are built with the fault
 * proxy (replies kept in flight, slow reconnections, cuts), the server's
 * own account of the commands it answered, events, and probes: independent
 * clients straight on the server. Cases 6-10 (losing the lock) are in
 * tests/lock_truth_loss_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { LockUnavailableError } from "../mod.ts";
import { DIALECTS, withServer } from "./support/client_server.ts";
import { leakCheckedTest } from "./support/leak_checked.ts";
import {
  deferred,
  happened,
  outcome,
  record,
  sentAny,
  within,
  withTruth,
} from "./support/lock_truth.ts";
import { sleep, until } from "./support/wait.ts";

/** Rounds of each of the two loops of each child process (case 5d). */
const ROUNDS = 25;

for (const dialect of DIALECTS) {
  // 1. Late grant vs newer grant.

  leakCheckedTest(
    `case 1: a late grant's release does not free a newer grant (lock, then lock again) [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe, proxy }) => {
        const client = await connect();
        const p = await probe();
        proxy.delay({ toClient: 300 }); // replies stay in flight while the test aborts and re-locks
        const controller = new AbortController();
        const reason = new Error("gave up");
        const first = client.lock("k", { signal: controller.signal });
        await until(() => sentAny(proxy, /(^|\n)lock k\n/), "the first lock k on the wire");
        controller.abort(reason);
        await assert.rejects(first, (error) => error === reason);
        assert.equal(await client.lock("k"), true, "the second lock k is granted");
        await client.stats(); // every reply is in, and whatever was sent for the late grant answered
        assert.equal(
          await p.lock("k"),
          false,
          "a probe got k while the second call holds it: the late grant's unlock freed it",
        );
        assert.equal(await client.unlock("k"), true);
        assert.equal(await p.lock("k", { timeout: 5000 }), true, "k released by its holder");
      }),
  );

  leakCheckedTest(
    `case 1: a late grant's release does not free a newer grant (lock, then acquire) [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe, proxy }) => {
        const client = await connect();
        const p = await probe();
        proxy.delay({ toClient: 300 });
        const controller = new AbortController();
        const reason = new Error("gave up");
        const first = client.lock("k", { signal: controller.signal });
        await until(() => sentAny(proxy, /(^|\n)lock k\n/), "the first lock k on the wire");
        controller.abort(reason);
        await assert.rejects(first, (error) => error === reason);
        const handle = await client.acquire("k", { timeout: 5000 });
        await client.stats();
        assert.equal(
          await p.lock("k"),
          false,
          "a probe got k while the handle holds it: the late grant's unlock freed it",
        );
        assert.equal(handle.lost, false, "the handle is not lost");
        assert.equal(handle.released, false, "the handle is not released");
        assert.equal(await handle.release(), true);
        assert.equal(await p.lock("k", { timeout: 5000 }), true, "k released by the handle");
      }),
  );

  leakCheckedTest(
    `case 1: a late grant's release does not free a newer grant (locks.request aborted, then locks.request) [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe, proxy }) => {
        // Exclusive requests of one client carry different values on an extended
        // server, so a newer grant there is a shared one.
        const mode = dialect === "original" ? "exclusive" : "shared";
        const client = await connect();
        const p = await probe();
        const probeTry = (options?: { timeout: number }) =>
          dialect === "original" ? p.lock("k", options) : p.lockValue("k", "probe", options);
        proxy.delay({ toClient: 300 });
        const controller = new AbortController();
        const reason = new Error("gave up");
        const first = client.locks.request(
          "k",
          { ifAvailable: true, mode, signal: controller.signal },
          () => "first ran",
        );
        const wire = dialect === "original" ? /(^|\n)lock k\n/ : /(^|\n)lock_value k shared\n/;
        await until(() => sentAny(proxy, wire), "the first request's lock on the wire");
        controller.abort(reason);
        await assert.rejects(first, (error) => error === reason);
        const probeGot = await client.locks.request("k", { mode }, async (lock) => {
          assert.ok(lock !== null, "the second request is granted");
          await client.stats();
          return await probeTry();
        });
        assert.equal(
          probeGot,
          false,
          "a probe got k while the second request's callback ran: the late grant's unlock freed it",
        );
        assert.equal(await probeTry({ timeout: 5000 }), true, "k released after the callback");
      }),
  );

  // 2. Late grant leak.

  leakCheckedTest(
    `case 2: a lock granted after its caller gave up, behind an unlock of the same key, is released [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe, proxy }) => {
        const client = await connect();
        const p = await probe();
        assert.equal(await client.lock("k"), true);
        proxy.delay({ toClient: 300 });
        let unlockAnswered = false;
        const unlocking = client.unlock("k").finally(() => {
          unlockAnswered = true;
        });
        const controller = new AbortController();
        const reason = new Error("gave up");
        const late = client.lock("k", { signal: controller.signal });
        await until(
          () => sentAny(proxy, /(^|\n)unlock k\n([^\n]*\n)*lock k\n/) || unlockAnswered,
          "the lock on the wire behind the unlock",
        );
        controller.abort(reason);
        await assert.rejects(late, (error) => error === reason);
        assert.equal(await unlocking, true);
        await client.stats(); // every reply is in
        assert.equal(
          await p.lock("k", { timeout: 5000 }),
          true,
          "k leaked: the late grant was never released (held until the session ends)",
        );
      }),
  );

  // 3. A lock lost with the connection, dropped by its deadline or signal while reconnecting.

  leakCheckedTest(
    `case 3: a lock whose grant was lost with the connection and whose deadline passed while reconnecting leaves k free [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe, proxy, served }) => {
        const client = await connect({ releaseTimeout: 60_000, heartbeat: false });
        const events = record(client);
        const p = await probe();
        proxy.delay({ toClient: 1000 }); // the grant's reply stays in flight...
        const call = client.lock("k", { timeout: 1000 });
        await served(/^lock k( \d+)?$/);
        proxy.delay({ toServer: 3000, toClient: 0 }); // ...the reconnection is slow...
        proxy.cut(); // ...and the grant is lost with the connection
        assert.equal(await call, false, "the deadline passed while the lock waited to be resent");
        await happened(events, "resume");
        proxy.delay({ toServer: 0 });
        assert.equal(
          await p.lock("k", { timeout: 5000 }),
          true,
          "k leaked: the resumed session still holds the grant nobody saw",
        );
      }),
  );

  leakCheckedTest(
    `case 3: a lock whose grant was lost with the connection and that was aborted while reconnecting leaves k free [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe, proxy, served }) => {
        const client = await connect({ releaseTimeout: 60_000, heartbeat: false });
        const events = record(client);
        const p = await probe();
        proxy.delay({ toClient: 1000 });
        const controller = new AbortController();
        const reason = new Error("gave up");
        const call = client.lock("k", { timeout: 30_000, signal: controller.signal });
        await served(/^lock k( \d+)?$/);
        proxy.delay({ toServer: 1500, toClient: 0 });
        proxy.cut();
        await happened(events, "reconnect");
        controller.abort(reason);
        await assert.rejects(call, (error) => error === reason);
        await happened(events, "resume");
        proxy.delay({ toServer: 0 });
        assert.equal(
          await p.lock("k", { timeout: 5000 }),
          true,
          "k leaked: the resumed session still holds the grant nobody saw",
        );
      }),
  );

  // 4. A lost handle's release does nothing.

  leakCheckedTest(
    `case 4: a lost handle's release does not free the lock of the new session [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe, restart }) => {
        const client = await connect({ releaseTimeout: 1000 });
        const events = record(client);
        const handle = await client.acquire("k");
        await restart();
        await happened(events, "sessionlost");
        assert.equal(handle.lost, true);
        const h2 = await client.acquire("k", { timeout: 5000 });
        assert.equal(await handle.release(), false, "the lost handle's release resolves false");
        await client.stats();
        const p = await probe();
        assert.equal(await p.lock("k"), false, "the lost handle's release freed the new lock");
        assert.equal(h2.lost, false);
        assert.equal(await h2.release(), true);
        assert.equal(await p.lock("k", { timeout: 5000 }), true);
      }),
  );

  // 5. One client's calls exclude each other.

  leakCheckedTest(
    `case 5a: two concurrent withLock calls on one client never run their functions at once [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe }) => {
        const client = await connect();
        let inside = 0;
        let most = 0;
        let done = 0;
        const work = async () => {
          inside++;
          most = Math.max(most, inside);
          await client.stats();
          inside--;
          done++;
        };
        await within(
          Promise.all([
            client.withLock("k", work, { timeout: 10_000 }),
            client.withLock("k", work, { timeout: 10_000 }),
          ]),
          20_000,
          "both withLock calls done",
        );
        assert.equal(most, 1, "both functions ran at the same time");
        assert.equal(done, 2);
        const p = await probe();
        assert.equal(await p.lock("k", { timeout: 5000 }), true, "nothing leaked");
      }),
  );

  leakCheckedTest(
    `case 5a: a second acquire on one client waits until the first handle is released [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe }) => {
        const client = await connect();
        const p = await probe();
        const order: string[] = [];
        const h1 = await client.acquire("k");
        const second = client.acquire("k", { timeout: 10_000 }).then((handle) => {
          order.push("second granted");
          return handle;
        });
        await client.stats(); // a round trip: time enough for a wrong grant to arrive
        order.push("first released");
        assert.equal(await h1.release(), true);
        const h2 = await within(second, 15_000, "the second acquire");
        assert.deepEqual(order, ["first released", "second granted"]);
        assert.equal(await p.lock("k"), false, "the second handle holds k");
        assert.equal(await h2.release(), true);
        assert.equal(await p.lock("k", { timeout: 5000 }), true);
      }),
  );

  leakCheckedTest(
    `case 5a: three concurrent acquires on one client get the lock one at a time, in call order [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe }) => {
        const client = await connect();
        const order: number[] = [];
        let inside = 0;
        let most = 0;
        const hold = async (i: number) => {
          const handle = await client.acquire("k", { timeout: 10_000 });
          inside++;
          most = Math.max(most, inside);
          order.push(i);
          await client.stats();
          inside--;
          await handle.release();
        };
        await within(Promise.all([hold(1), hold(2), hold(3)]), 20_000, "three acquires");
        assert.equal(most, 1, "more than one handle held k at once");
        assert.deepEqual(order, [1, 2, 3]);
        const p = await probe();
        assert.equal(await p.lock("k", { timeout: 5000 }), true, "nothing leaked");
      }),
  );

  leakCheckedTest(
    `case 5b: an acquire queued behind the same client's holder honours its timeout and signal [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe }) => {
        const client = await connect();
        const p = await probe();
        const h1 = await client.acquire("k");
        await assert.rejects(
          within(client.acquire("k", { timeout: 300 }), 10_000, "the acquire with timeout 300"),
          LockUnavailableError,
          "an acquire with a timeout, behind the same client's handle, is granted",
        );
        const controller = new AbortController();
        const reason = new Error("stop waiting");
        const waiting = outcome(
          client.acquire("k", { timeout: 30_000, signal: controller.signal }),
        );
        await client.stats(); // a round trip: time enough for a wrong grant to arrive
        controller.abort(reason);
        const waited = await within(waiting, 10_000, "the aborted acquire");
        assert.ok(
          waited.error === reason,
          `an aborted acquire, behind the same client's handle, ${
            "value" in waited ? "was granted" : `rejected with ${waited.error}`
          }`,
        );
        assert.equal(await h1.release(), true);
        const h3 = await within(
          client.acquire("k", { timeout: 5000 }),
          10_000,
          "the third acquire",
        );
        assert.equal(await p.lock("k"), false, "the third handle holds k");
        assert.equal(await h3.release(), true);
        assert.equal(await p.lock("k", { timeout: 5000 }), true, "nothing leaked");
      }),
  );

  leakCheckedTest(
    `case 5e: a raw unlock under a handle never leaves the handle believing while a probe gets k [${dialect}]`,
    () =>
      withTruth(dialect, async ({ connect, probe }) => {
        const client = await connect();
        const p = await probe();
        const handle = await client.acquire("k");
        await outcome(client.unlock("k"));
        const probeGot = await p.lock("k");
        const { lost, released } = handle;
        assert.ok(
          !probeGot || lost || released,
          "a probe got k while the handle still believes it holds it (lost false, released false)",
        );
        if (probeGot) await p.unlock("k");
        if (!released) await outcome(handle.release());
      }),
  );

  test(
    `case 5d: 4 processes, each one client with two concurrent loops of 25 withLock increments, count exactly 200 [${dialect}]`,
    { timeout: 120_000 },
    () =>
      withServer(dialect, async ({ port }) => {
        const dir = await mkdtemp(join(tmpdir(), "elock-truth-"));
        try {
          const file = join(dir, "counter");
          await writeFile(file, "0");
          const env = {
            ELOCK_PORT: String(port),
            ELOCK_COUNTER_FILE: file,
            ELOCK_ROUNDS: String(ROUNDS),
          };
          const results = await Promise.all([1, 2, 3, 4].map(() => runChild(env)));
          for (const { code, output } of results) assert.equal(code, 0, output);
          assert.equal(Number(await readFile(file, "utf8")), 4 * 2 * ROUNDS, "lost increments");
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }),
  );
}

// 5c. Shared requests of one client share (value locks: extended only).

leakCheckedTest(
  "case 5c: two shared requests on one client run at the same time; an exclusive one waits for both [extended]",
  () =>
    withTruth("extended", async ({ connect, probe }) => {
      const client = await connect();
      let sharedInside = 0;
      const bothIn = deferred();
      const letGo = deferred();
      const shared = () =>
        client.locks.request("k", { mode: "shared" }, async () => {
          if (++sharedInside === 2) bothIn.resolve();
          await letGo.promise;
          sharedInside--;
        });
      const requests = [shared(), shared()];
      try {
        await within(bothIn.promise, 5000, "both shared callbacks running at the same time");
        const exclusive = client.locks.request("k", () => sharedInside);
        await sleep(200); // a chance for a wrong early start (nothing waits on it)
        letGo.resolve();
        await Promise.all(requests);
        assert.equal(
          await within(exclusive, 15_000, "the exclusive request"),
          0,
          "the exclusive callback ran while shared callbacks held k",
        );
      } finally {
        letGo.resolve();
        await Promise.allSettled(requests);
      }
      const p = await probe();
      assert.equal(await p.lockValue("k", "probe", { timeout: 5000 }), true, "nothing leaked");
    }),
);

const CHILD = fileURLToPath(
  new URL(
    "./support/counter_child." + (import.meta.url.endsWith(".js") ? "js" : "ts"),
    import.meta.url,
  ),
);

/** Runs the counter child to the end (killed after 100 s); its exit code and output. */
function runChild(
  env: Record<string, string>,
): Promise<{ code: number | string; output: string }> {
  const command = "Deno" in globalThis
    ? [process.execPath, "run", "-A", CHILD]
    : [process.execPath, CHILD];
  const child = spawn(command[0]!, command.slice(1), {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (text: string) => output += text);
  child.stderr.setEncoding("utf8").on("data", (text: string) => output += text);
  const timer = setTimeout(() => child.kill("SIGKILL"), 100_000);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal ?? "unknown", output });
    });
  });
}
