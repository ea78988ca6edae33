/**
 * The client inside workerd (the Cloudflare Workers runtime), through
 * Miniflare: a Worker module imports `connect` from `cloudflare:sockets` and
 * the library's JavaScript as tsc compiled it (`.build/node/mod.js` and the
 * modules it imports), talks to the bundled server on a loopback port with
 * `socketTransport(connect)`, and answers the request with what each call
 * returned. This file checks every reported value, and checks the server's
 * side with a Node client.
 *
 * Run by the `workerd` pass of scripts/test.ts, on the compiled file
 * `.build/node/tests/workerd/socket_transport_test.js`: it needs the tsc
 * output beside it, so the Deno, Bun and Node passes do not run it.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { join, relative, sep } from "node:path";
import { ELockClient } from "../../mod.ts";
import { type Dialect, sessionName, startServer } from "../../src/server/mod.ts";
import { BUILD_ROOT, libraryModules, withWorker } from "./harness.ts";

const DIALECTS: readonly Dialect[] = ["original", "extended"];

/**
 * The Worker. `GET /?port=N&scenario=session` runs the client calls against
 * the server on port N; `scenario=default-transport` connects without a
 * transport; `scenario=connect` only connects. Each call's outcome is
 * reported as `{ ok: value }` or `{ error: name }`.
 */
const WORKER_SOURCE = `
import { connect } from "cloudflare:sockets";
import { ELockClient, socketTransport } from "../../mod.js";

async function outcome(fn) {
  try {
    return { ok: await fn() };
  } catch (error) {
    const report = { error: error?.name ?? String(error), message: String(error?.message ?? "") };
    if (error?.cause !== undefined) report.cause = error.cause?.name ?? String(error.cause);
    return report;
  }
}

async function session(port) {
  const transport = socketTransport(connect);
  const a = await ELockClient.connect({ port, transport });
  const b = await ELockClient.connect({ port, transport });
  try {
    const r = {};
    r.sessionA = await outcome(() => a.sessionId());
    r.sessionB = await outcome(() => b.sessionId());
    r.lockA = await outcome(() => a.lock("k"));
    r.lockB = await outcome(() => b.lock("k"));
    r.stats = await outcome(() => a.stats());
    r.lockValueA = await outcome(() => a.lockValue("v", "v1"));
    r.lockValueB = await outcome(() => b.lockValue("v", "v1"));
    r.debug = await outcome(() => a.debug());
    r.unlockA = await outcome(() => a.unlock("k"));
    r.unlockValueA = await outcome(() => a.unlock("v"));
    r.unlockValueB = await outcome(() => b.unlock("v"));
    r.withLock = await outcome(() =>
      a.withLock("w", async (lock) => ({ key: lock.key, otherSession: await b.lock("w") }))
    );
    r.lockAfterWithLock = await outcome(() => b.lock("w"));
    r.unlockAfterWithLock = await outcome(() => b.unlock("w"));
    return r;
  } finally {
    // close(), not unlock_all: what stays locked is what the calls above left.
    await a.close();
    await b.close();
  }
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const port = Number(url.searchParams.get("port"));
    switch (url.searchParams.get("scenario")) {
      case "session":
        return Response.json(await session(port));
      case "default-transport":
        return Response.json(await outcome(() => ELockClient.connect({ port })));
      case "connect":
        return Response.json(await outcome(async () => {
          const client = await ELockClient.connect({ port, transport: socketTransport(connect) });
          await client.close();
          return "connected";
        }));
      default:
        return new Response("unknown scenario", { status: 400 });
    }
  },
};
`;

/** A call's outcome as the Worker reports it (`cause`: the error's cause's name, if any). */
type Outcome<T> = { ok: T } | { error: string; message: string; cause?: string };

/** What the `session` scenario reports. */
interface SessionReport {
  sessionA: Outcome<string>;
  sessionB: Outcome<string>;
  lockA: Outcome<boolean>;
  lockB: Outcome<boolean>;
  stats: Outcome<{ clients: number; locks: number; monitoring: number }>;
  lockValueA: Outcome<boolean>;
  lockValueB: Outcome<boolean>;
  debug: Outcome<{
    sessions: unknown[];
    locks: Array<{ key: string; holders: string[]; value: string | null }>;
    requests: unknown[];
  }>;
  unlockA: Outcome<boolean>;
  unlockValueA: Outcome<boolean>;
  unlockValueB: Outcome<boolean>;
  withLock: Outcome<{ key: string; otherSession: boolean }>;
  lockAfterWithLock: Outcome<boolean>;
  unlockAfterWithLock: Outcome<boolean>;
}

/** The value of a call that must have succeeded. */
function ok<T>(outcome: Outcome<T>, what: string): T {
  if ("error" in outcome) {
    assert.fail(`${what} rejected in the Worker: ${outcome.error}: ${outcome.message}`);
  }
  return outcome.ok;
}

/** The error of a call that must have rejected. */
function rejection(
  outcome: Outcome<unknown>,
  what: string,
): { error: string; message: string; cause?: string } {
  if (!("error" in outcome)) {
    assert.fail(`${what} resolved in the Worker: ${JSON.stringify(outcome.ok)}`);
  }
  return outcome;
}

/** The error name of a call that must have rejected. */
function rejected(outcome: Outcome<unknown>, what: string): string {
  return rejection(outcome, what).error;
}

test("the Worker loads the library's compiled modules, and not the server or CLI", async () => {
  const names = (await libraryModules()).map((path) => relative(BUILD_ROOT, path)).sort();
  assert.ok(names.includes("mod.js"));
  assert.ok(names.includes(join("src", "transport", "socket.js")));
  assert.ok(names.includes(join("src", "client", "client.js")));
  const serverOrCli = (n: string) =>
    n.startsWith(join("src", "server") + sep) || n.startsWith(join("src", "cli") + sep) ||
    n === join("src", "cli.js");
  assert.deepEqual(names.filter(serverOrCli), []);
});

for (const dialect of DIALECTS) {
  test(`[${dialect}] ELockClient with socketTransport(connect) works inside workerd`, async () => {
    await using server = await startServer({ port: 0, dialect });
    let report: SessionReport | undefined;
    await withWorker(WORKER_SOURCE, async (get) => {
      report = await get(`port=${server.port}&scenario=session`) as SessionReport;
    });
    assert.ok(report !== undefined);
    const r = report;

    const idA = ok(r.sessionA, "a.sessionId()");
    const idB = ok(r.sessionB, "b.sessionId()");
    assert.match(idA, /^[A-Za-z0-9_-]{16}$/);
    assert.match(idB, /^[A-Za-z0-9_-]{16}$/);
    assert.notEqual(idA, idB);

    assert.equal(ok(r.lockA, 'a.lock("k")'), true);
    assert.equal(ok(r.lockB, 'b.lock("k") while a holds it'), false);
    assert.deepEqual(ok(r.stats, "a.stats()"), { clients: 2, locks: 1, monitoring: 2 });

    if (dialect === "extended") {
      assert.equal(ok(r.lockValueA, 'a.lockValue("v", "v1")'), true);
      assert.equal(ok(r.lockValueB, 'b.lockValue("v", "v1")'), true, "same value: shared");
      const debug = ok(r.debug, "a.debug()");
      const locks = debug.locks
        .map((l) => ({ ...l, holders: [...l.holders].sort() }))
        .sort((x, y) => x.key.localeCompare(y.key));
      // The server prints the sessions' public names, not their ids.
      const [nameA, nameB] = [sessionName(idA), sessionName(idB)];
      assert.deepEqual(locks, [
        { key: "k", holders: [nameA], value: null },
        { key: "v", holders: [nameA, nameB].sort(), value: "v1" },
      ]);
      assert.deepEqual(debug.requests, []);
      const sessionIds = (debug.sessions as Array<{ id?: unknown }>).map((s) => s.id);
      assert.deepEqual(sessionIds.sort(), [nameA, nameB].sort());
      assert.equal(ok(r.unlockValueA, 'a.unlock("v")'), true);
      assert.equal(ok(r.unlockValueB, 'b.unlock("v")'), true);
    } else {
      assert.equal(rejected(r.lockValueA, "a.lockValue() on original"), "UnsupportedCommandError");
      assert.equal(rejected(r.lockValueB, "b.lockValue() on original"), "UnsupportedCommandError");
      assert.equal(rejected(r.debug, "a.debug() on original"), "UnsupportedCommandError");
      // "v" was never locked: the original server answers 403 not_locked.
      assert.equal(ok(r.unlockValueA, 'a.unlock("v")'), false);
      assert.equal(ok(r.unlockValueB, 'b.unlock("v")'), false);
    }

    assert.equal(ok(r.unlockA, 'a.unlock("k")'), true);
    assert.deepEqual(ok(r.withLock, 'a.withLock("w", ...)'), { key: "w", otherSession: false });
    assert.equal(ok(r.lockAfterWithLock, 'b.lock("w") after withLock'), true);
    assert.equal(ok(r.unlockAfterWithLock, 'b.unlock("w")'), true);

    // The server's side, from Node: the Worker's sessions are known (they
    // wait out their release timeout), and nothing is left locked, so the
    // Worker's unlocks really happened.
    await using node = await ELockClient.connect({ port: server.port });
    assert.deepEqual(await node.stats(), { clients: 3, locks: 0, monitoring: 3 });
    for (const key of ["k", "v", "w"]) assert.equal(await node.lock(key), true, key);
  });
}

test("connecting from the Worker to a closed port rejects with ConnectionClosedError", async () => {
  const server = await startServer({ port: 0 });
  const port = server.port;
  await server.close();
  await withWorker(WORKER_SOURCE, async (get) => {
    const outcome = await get(`port=${port}&scenario=connect`) as Outcome<string>;
    const error = rejection(outcome, "ELockClient.connect() to a closed port");
    assert.equal(error.error, "ConnectionClosedError", error.message);
    assert.ok(error.message.includes(`127.0.0.1:${port}`), error.message);
    // workerd's own error from socket.opened, kept as the cause.
    assert.equal(error.cause, "Error", error.message);
  });
});

test("inside the Worker there is no default transport: connect() without one rejects", async () => {
  await using server = await startServer({ port: 0 });
  await withWorker(WORKER_SOURCE, async (get) => {
    const outcome = await get(`port=${server.port}&scenario=default-transport`) as Outcome<never>;
    assert.equal(rejected(outcome, "ELockClient.connect() without a transport"), "TypeError");
  });
});
