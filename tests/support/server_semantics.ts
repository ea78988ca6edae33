/**
 * Lock-table semantics through real TCP, defined once for both stores: a
 * server started with `startServer({ port: 0 })` (memory store, sequential
 * ids) or two servers on one etcd (the clients of a test alternate between
 * them, so every rule is also checked across servers), raw line clients,
 * both dialects where the behaviour exists in both. Used by
 * `server_semantics_test.ts` and `server_semantics_etcd_test.ts`.
 *
 * Timer-driven changes are awaited by polling with a generous bound; no test
 * asserts how long anything took.
 *
 * @module
 */

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { type Dialect, type ServerEvent, sessionName, startServer } from "../../src/server/mod.ts";
import { type EtcdCluster, startEtcd } from "./etcd.ts";
import { LineClient } from "./line_client.ts";
import { sleep, until } from "./wait.ts";

/** Where the lock table lives. */
export type SemanticsStore = "memory" | "etcd";

const DIALECTS: readonly Dialect[] = ["original", "extended"];

/** The reply lines of one dialect, exactly as read (original keeps its `\r`). */
interface Replies {
  readonly acquired: string;
  unavailable(holders: readonly string[], value?: string): string;
  readonly unlocked: string;
  readonly notLocked: string;
  notYours(holders: readonly string[]): string;
  readonly ok: string;
  readonly timeoutSet: string;
  readonly resumed: string;
  readonly quit: string;
  id(id: string): string;
}

const hashes = (ids: readonly string[]) => ids.map((id) => `#${id}`).join(", ");

const REPLIES: Record<Dialect, Replies> = {
  original: {
    acquired: "200 Acquired\r",
    unavailable: () => "409 Unavailable\r",
    unlocked: "200 Unlocked\r",
    notLocked: "403 not_locked\r",
    notYours: () => "403 not_yours\r",
    ok: "200 OK\r",
    timeoutSet: "200 timeout set\r",
    resumed: "200 conn id set\r",
    quit: "200 Hey, it was nice seeing you.\r",
    id: (id) => `200 ${id}\r`,
  },
  extended: {
    acquired: "200 Lock acquired",
    unavailable: (holders, value) =>
      `409 Already locked by ${hashes(holders)}${value === undefined ? "" : ` (${value})`}`,
    unlocked: "200 Lock released",
    notLocked: "200 Lock released",
    notYours: (holders) => `403 Locked by ${hashes(holders)}`,
    ok: "200 OK",
    timeoutSet: "200 OK",
    resumed: "200 Resumed",
    quit: "200 OK",
    id: (id) => `200 ${id}`,
  },
};

/** A line client that knows its session id (once asked) and the name servers print for it. */
interface Client {
  readonly line: LineClient;
  /** The secret id `conn_id` answers (and resumes). */
  id: string;
  /** The public name replies and `debug` show. */
  name: string;
}

/** A server on a free loopback port with its clients; disposing closes all of them. */
interface Harness extends AsyncDisposable {
  readonly dialect: Dialect;
  readonly port: number;
  readonly r: Replies;
  readonly events: ServerEvent[];
  /** Connects; with `askId` (default) sends `conn_id` first to learn the id. */
  connect(askId?: boolean): Promise<Client>;
  /** Resolves once the server has detached session `id` from its connection. */
  disconnected(id: string): Promise<void>;
  /** Resolves once `client`'s `lock`/`lock_value` on `key` is queued on the server. */
  queued(client: Client, key: string): Promise<void>;
}

/** One etcd for every test of a file on the etcd store; each test has its own prefix. */
let etcd: Promise<EtcdCluster> | null = null;
let tables = 0;
after(async () => {
  if (etcd !== null) await (await etcd).stop();
});

async function serve(dialect: Dialect, store: SemanticsStore): Promise<Harness> {
  const events: ServerEvent[] = [];
  const onEvent = (event: ServerEvent) => events.push(event);
  const base = { port: 0, hostname: "127.0.0.1", onEvent } as const;
  let servers;
  let probeServer = null;
  if (store === "memory") {
    servers = [await startServer({ ...base, dialect, sequentialIds: true })];
  } else {
    etcd ??= startEtcd();
    const on = {
      ...base,
      store: "etcd",
      etcdEndpoints: (await etcd).endpoints,
      etcdPrefix: `semantics-${tables++}/`,
    } as const;
    servers = [await startServer({ ...on, dialect }), await startServer({ ...on, dialect })];
    // The original dialect has no `debug`: a third server of the table shows its queue.
    probeServer = await startServer({ ...on, dialect: "extended" });
  }
  const clients: LineClient[] = [];
  let probe: LineClient | null = null;
  const connect = async (askId = true): Promise<Client> => {
    const line = await LineClient.connect(servers[clients.length % servers.length]!.port);
    clients.push(line);
    const client: Client = { line, id: "", name: "" };
    if (askId) {
      const reply = await line.request("conn_id");
      const match = /^200 (\S+?)\r?$/.exec(reply);
      assert.ok(match, `conn_id answered ${JSON.stringify(reply)}`);
      client.id = match[1]!;
      client.name = store === "memory" ? client.id : sessionName(client.id);
    }
    return client;
  };
  const server = servers[0]!;
  return {
    dialect,
    port: server.port,
    r: REPLIES[dialect],
    events,
    connect,
    disconnected: (id) =>
      until(
        () => events.some((e) => e.type === "disconnect" && e.session === id),
        `disconnect of #${id}`,
      ),
    async queued(client, key) {
      if (dialect === "original" && probeServer === null) {
        // The original dialect shows no queue; give the server time to read the line.
        await sleep(150);
        return;
      }
      probe ??= await LineClient.connect((probeServer ?? server).port);
      const wanted = `REQUEST #${client.name} ${key}`;
      const p = probe;
      await until(async () => (await debug(p)).includes(wanted), wanted);
    },
    async [Symbol.asyncDispose]() {
      await Promise.all([...clients, ...(probe ? [probe] : [])].map((c) => c.close()));
      await Promise.all([...servers, ...(probeServer ? [probeServer] : [])].map((s) => s.close()));
    },
  };
}

/** Sends `debug` and returns its lines up to and without `END`. */
async function debug(client: LineClient): Promise<string[]> {
  client.send("debug");
  assert.equal(await client.line(), "200 DEBUG");
  const lines: string[] = [];
  for (;;) {
    const line = await client.line();
    if (line === "END") return lines;
    lines.push(line);
  }
}

/** Sends `stats` and returns its counters. */
async function stats(client: Client, eol: string): Promise<Record<string, number>> {
  client.line.send("stats");
  assert.equal(await client.line.line(), `200 STATS${eol}`);
  const counters: Record<string, number> = {};
  for (;;) {
    const line = await client.line.line();
    if (line === `END${eol}`) return counters;
    const match = /^STAT (\S+) (\d+)\r?$/.exec(line);
    assert.ok(match, `unexpected stats line ${JSON.stringify(line)}`);
    counters[match[1]!] = Number(match[2]);
  }
}

/** Asserts that nothing arrives at `client` for a short while. */
async function quiet(client: Client): Promise<void> {
  assert.equal(await client.line.lineOrNull(150), null);
}

/** Retries `lock key` on `client` until it answers acquired. */
async function lockEventually(h: Harness, client: Client, key: string): Promise<void> {
  await until(async () => {
    const reply = await client.line.request(`lock ${key}`);
    if (reply === h.r.acquired) return true;
    assert.match(reply, /^409 /);
    return false;
  }, `${key} to be released`);
}

/**
 * Defines every semantics test on `store`.
 *
 * @example
 * ```ts ignore
 * defineServerSemantics("etcd");
 * ```
 */
export function defineServerSemantics(store: SemanticsStore): void {
  const on = store === "memory" ? "" : ", two servers on etcd";
  for (const dialect of DIALECTS) {
    test(`startServer() [${dialect}${on}] serves 3 waiters first come, first served`, async () => {
      await using h = await serve(dialect, store);
      const [a, b, c, d] = [
        await h.connect(),
        await h.connect(),
        await h.connect(),
        await h.connect(),
      ];
      assert.equal(await a.line.request("lock k"), h.r.acquired);
      for (const w of [b, c, d]) {
        w.line.send("lock k 10");
        await h.queued(w, "k");
      }
      assert.equal(await a.line.request("unlock k"), h.r.unlocked);
      assert.equal(await b.line.line(), h.r.acquired);
      await quiet(c);
      await quiet(d);
      assert.equal(await b.line.request("unlock k"), h.r.unlocked);
      assert.equal(await c.line.line(), h.r.acquired);
      await quiet(d);
      assert.equal(await c.line.request("unlock_all"), h.r.ok);
      assert.equal(await d.line.line(), h.r.acquired);
      assert.equal(await a.line.request("lock k"), h.r.unavailable([d.name]));
    });

    test(`startServer() [${dialect}${on}] answers a waiter 409 at its deadline; the next waiter gets the next release`, async () => {
      await using h = await serve(dialect, store);
      const [a, b, c] = [await h.connect(), await h.connect(), await h.connect()];
      assert.equal(await a.line.request("lock k"), h.r.acquired);
      b.line.send("lock k 1");
      await h.queued(b, "k");
      c.line.send("lock k 10");
      await h.queued(c, "k");
      assert.equal(await b.line.line(5000), h.r.unavailable([a.name]));
      await quiet(c);
      assert.equal(await a.line.request("unlock k"), h.r.unlocked);
      assert.equal(await c.line.line(), h.r.acquired);
      // The timed-out waiter holds nothing and its connection goes on.
      assert.equal(await b.line.request("lock k"), h.r.unavailable([c.name]));
      assert.equal(await b.line.request("lock other"), h.r.acquired);
    });

    test(`startServer() [${dialect}${on}] a waiter that disconnects leaves the queue: A unlocks, C's lock gets the key (defect 4)`, async () => {
      await using h = await serve(dialect, store);
      const [a, b, c] = [await h.connect(), await h.connect(), await h.connect()];
      assert.equal(await a.line.request("lock k"), h.r.acquired);
      b.line.send("lock k 10");
      await h.queued(b, "k");
      await b.line.close();
      await h.disconnected(b.name);
      assert.equal(await a.line.request("unlock k"), h.r.unlocked);
      assert.equal(await c.line.request("lock k"), h.r.acquired);
    });

    test(`startServer() [${dialect}${on}] a waiter that resets its connection mid-queue is skipped on release`, async () => {
      await using h = await serve(dialect, store);
      const [a, b, c, d] = [
        await h.connect(),
        await h.connect(),
        await h.connect(),
        await h.connect(),
      ];
      assert.equal(await a.line.request("lock k"), h.r.acquired);
      for (const w of [b, c]) {
        w.line.send("lock k 10");
        await h.queued(w, "k");
      }
      b.line.reset();
      await h.disconnected(b.name);
      assert.equal(await a.line.request("unlock k"), h.r.unlocked);
      assert.equal(await c.line.line(), h.r.acquired);
      assert.equal(await d.line.request("lock k"), h.r.unavailable([c.name]));
    });

    test(`startServer() [${dialect}${on}] set_timeout 500: locks survive a disconnect, then are released`, async () => {
      await using h = await serve(dialect, store);
      const [a, b] = [await h.connect(), await h.connect()];
      assert.equal(await a.line.request("set_timeout 500"), h.r.timeoutSet);
      assert.equal(await a.line.request("lock r"), h.r.acquired);
      assert.equal(await a.line.request("lock s"), h.r.acquired);
      await a.line.close();
      await h.disconnected(a.name);
      assert.equal(await b.line.request("lock r"), h.r.unavailable([a.name]));
      await lockEventually(h, b, "r");
      assert.equal(await b.line.request("lock s"), h.r.acquired);
    });

    test(`startServer() [${dialect}${on}] set_timeout 500: a waiter gets the lock when the holder's session expires`, async () => {
      await using h = await serve(dialect, store);
      const [a, b] = [await h.connect(), await h.connect()];
      assert.equal(await a.line.request("set_timeout 500"), h.r.timeoutSet);
      assert.equal(await a.line.request("lock r"), h.r.acquired);
      await a.line.close();
      await h.disconnected(a.name);
      b.line.send("lock r 10");
      assert.equal(await b.line.line(8000), h.r.acquired);
    });

    test(`startServer() [${dialect}${on}] set_timeout 0 releases the locks the moment the connection closes`, async () => {
      await using h = await serve(dialect, store);
      const [a, b] = [await h.connect(), await h.connect()];
      assert.equal(await a.line.request("set_timeout 0"), h.r.timeoutSet);
      assert.equal(await a.line.request("lock r"), h.r.acquired);
      await a.line.close();
      await h.disconnected(a.name);
      assert.equal(await b.line.request("lock r"), h.r.acquired);
    });

    test(`startServer() [${dialect}${on}] by default keeps a disconnected session's locks`, async () => {
      await using h = await serve(dialect, store);
      const [a, b] = [await h.connect(), await h.connect()];
      assert.equal(await a.line.request("lock r"), h.r.acquired);
      await a.line.close();
      await h.disconnected(a.name);
      assert.equal(await b.line.request("lock r"), h.r.unavailable([a.name]));
    });

    test(`startServer() [${dialect}${on}] unlock_all releases everything the session holds`, async () => {
      await using h = await serve(dialect, store);
      const [a, b, c] = [await h.connect(), await h.connect(), await h.connect()];
      assert.equal(await a.line.request("lock k1"), h.r.acquired);
      assert.equal(await a.line.request("lock k2"), h.r.acquired);
      assert.equal(await a.line.request("lock k3"), h.r.acquired);
      c.line.send("lock k2 10");
      await h.queued(c, "k2");
      assert.equal(await a.line.request("unlock_all"), h.r.ok);
      assert.equal(await c.line.line(), h.r.acquired);
      assert.equal(await b.line.request("lock k1"), h.r.acquired);
      assert.equal(await b.line.request("lock k3"), h.r.acquired);
      assert.equal(await a.line.request("unlock k1"), h.r.notYours([b.name]));
      assert.equal(await a.line.request("unlock_all"), h.r.ok);
      assert.equal(await a.line.request("lock k2"), h.r.unavailable([c.name]));
    });

    test(`startServer() [${dialect}${on}] unlock of another session's key is refused and leaves the lock`, async () => {
      await using h = await serve(dialect, store);
      const [a, b] = [await h.connect(), await h.connect()];
      assert.equal(await a.line.request("lock k"), h.r.acquired);
      assert.equal(await b.line.request("unlock k"), h.r.notYours([a.name]));
      assert.equal(await b.line.request("lock k"), h.r.unavailable([a.name]));
      assert.equal(await b.line.request("unlock never-locked"), h.r.notLocked);
      assert.equal(await a.line.request("unlock k"), h.r.unlocked);
      assert.equal(await a.line.request("unlock k"), h.r.notLocked);
      assert.equal(await b.line.request("lock k"), h.r.acquired);
    });

    test(`startServer() [${dialect}${on}] after a hand-off, the previous holder's unlock_all leaves the waiter's lock (defect 9)`, async () => {
      await using h = await serve(dialect, store);
      const [a, b, c] = [await h.connect(), await h.connect(), await h.connect()];
      assert.equal(await a.line.request("lock k"), h.r.acquired);
      b.line.send("lock k 10");
      await h.queued(b, "k");
      assert.equal(await a.line.request("unlock k"), h.r.unlocked);
      assert.equal(await b.line.line(), h.r.acquired);
      assert.equal(await a.line.request("lock other"), h.r.acquired);
      assert.equal(await a.line.request("unlock_all"), h.r.ok);
      assert.equal(await c.line.request("lock k"), h.r.unavailable([b.name]));
      assert.equal(await a.line.request("unlock k"), h.r.notYours([b.name]));
      assert.equal(await c.line.request("lock k"), h.r.unavailable([b.name]));
    });

    test(`startServer() [${dialect}${on}] after a hand-off, the previous holder's session expiry leaves the waiter's lock (defect 9)`, async () => {
      await using h = await serve(dialect, store);
      const [a, b, c] = [await h.connect(), await h.connect(), await h.connect()];
      assert.equal(await a.line.request("set_timeout 0"), h.r.timeoutSet);
      assert.equal(await a.line.request("lock k"), h.r.acquired);
      b.line.send("lock k 10");
      await h.queued(b, "k");
      assert.equal(await a.line.request("unlock k"), h.r.unlocked);
      assert.equal(await b.line.line(), h.r.acquired);
      await a.line.close();
      await h.disconnected(a.name);
      assert.equal(await c.line.request("lock k"), h.r.unavailable([b.name]));
      assert.equal(await b.line.request("unlock k"), h.r.unlocked);
      assert.equal(await c.line.request("lock k"), h.r.acquired);
    });

    test(`startServer() [${dialect}${on}] a disconnect with set_timeout 0 hands the key to the waiter, who keeps it`, async () => {
      await using h = await serve(dialect, store);
      const [a, b, c] = [await h.connect(), await h.connect(), await h.connect()];
      assert.equal(await a.line.request("set_timeout 0"), h.r.timeoutSet);
      assert.equal(await a.line.request("lock k"), h.r.acquired);
      b.line.send("lock k 10");
      await h.queued(b, "k");
      await a.line.close();
      assert.equal(await b.line.line(), h.r.acquired);
      await h.disconnected(a.name);
      assert.equal(await c.line.request("lock k"), h.r.unavailable([b.name]));
    });

    test(`startServer() [${dialect}${on}] a session expired after its release timeout cannot be resumed`, async () => {
      await using h = await serve(dialect, store);
      const [a, b] = [await h.connect(), await h.connect()];
      assert.equal(await a.line.request("set_timeout 200"), h.r.timeoutSet);
      assert.equal(await a.line.request("lock r"), h.r.acquired);
      await a.line.close();
      await h.disconnected(a.name);
      await lockEventually(h, b, "r");
      assert.equal(await b.line.request("unlock r"), h.r.unlocked);
      assert.equal(await b.line.request("lock r"), h.r.acquired);
      const n = await h.connect(false);
      const reply = await n.line.request(`conn_id ${a.id}`);
      if (dialect === "extended") {
        assert.equal(reply, "403 Can not resume connection - it is already disposed");
      } else {
        // PROTOCOL.md: the original lets a fresh connection claim an unused id;
        // either way no lock of the expired session may come back.
        assert.match(reply, /^(200 conn id set|403 cannot set conn id)\r$/);
      }
      assert.equal(await n.line.request("unlock r"), h.r.notYours([b.name]));
      assert.equal(await n.line.request("lock r"), h.r.unavailable([b.name]));
    });

    test(`startServer() [${dialect}${on}] a resumed session keeps its locks and its id`, async () => {
      await using h = await serve(dialect, store);
      const [a, b] = [await h.connect(), await h.connect()];
      assert.equal(await a.line.request("set_timeout 5000"), h.r.timeoutSet);
      assert.equal(await a.line.request("lock r"), h.r.acquired);
      assert.equal(await a.line.request("lock s"), h.r.acquired);
      await a.line.close();
      await h.disconnected(a.name);
      assert.equal(await b.line.request("lock r"), h.r.unavailable([a.name]));
      const n = await h.connect(false);
      assert.equal(await n.line.request(`conn_id ${a.id}`), h.r.resumed);
      assert.equal(await n.line.request("conn_id"), h.r.id(a.id));
      assert.equal(await b.line.request("lock s"), h.r.unavailable([a.name]));
      assert.equal(await n.line.request("unlock r"), h.r.unlocked);
      assert.equal(await b.line.request("lock r"), h.r.acquired);
      // The adopted session is connected now: nobody else can take it.
      const m = await h.connect(false);
      assert.match(await m.line.request(`conn_id ${a.id}`), /^403 /);
      // And its release timeout still applies when it leaves again.
      await n.line.close();
      await h.disconnected(a.name);
      assert.equal(await b.line.request("lock s"), h.r.unavailable([a.name]));
    });

    test(`startServer() [${dialect}${on}] stats counts clients, locks and monitoring after locks and disconnects`, async () => {
      await using h = await serve(dialect, store);
      const eol = dialect === "original" ? "\r" : "";
      const [a, b] = [await h.connect(), await h.connect()];
      assert.deepEqual(await stats(a, eol), { clients: 2, locks: 0, monitoring: 2 });
      assert.equal(await a.line.request("lock s1"), h.r.acquired);
      assert.equal(await a.line.request("lock s2"), h.r.acquired);
      assert.deepEqual(await stats(a, eol), { clients: 2, locks: 2, monitoring: 2 });
      assert.equal(await a.line.request("lock s1"), h.r.acquired, "re-entrant lock is one lock");
      assert.equal(await b.line.request("lock s1"), h.r.unavailable([a.name]));
      assert.deepEqual(await stats(b, eol), { clients: 2, locks: 2, monitoring: 2 });
      const c = await h.connect();
      assert.equal(await c.line.request("set_timeout 0"), h.r.timeoutSet);
      assert.equal(await c.line.request("lock s3"), h.r.acquired);
      assert.deepEqual(await stats(b, eol), { clients: 3, locks: 3, monitoring: 3 });
      await c.line.close();
      await h.disconnected(c.name);
      assert.deepEqual(await stats(b, eol), { clients: 2, locks: 2, monitoring: 2 });
      assert.equal(await a.line.request("unlock s1"), h.r.unlocked);
      assert.deepEqual(await stats(b, eol), { clients: 2, locks: 1, monitoring: 2 });
      assert.equal(await a.line.request("unlock_all"), h.r.ok);
      assert.deepEqual(await stats(b, eol), { clients: 2, locks: 0, monitoring: 2 });
    });
  }

  test(`startServer() [original${on}] quit answers, closes the connection, and the locks follow the release timeout`, async () => {
    await using h = await serve("original", store);
    const [a, b] = [await h.connect(), await h.connect()];
    assert.equal(await a.line.request("lock q"), "200 Acquired\r");
    assert.equal(await a.line.request("quit"), "200 Hey, it was nice seeing you.\r");
    assert.equal(await a.line.waitEnd(), true);
    await h.disconnected(a.name);
    assert.equal(await b.line.request("lock q"), "409 Unavailable\r");
  });

  test(`startServer() [original${on}] quit with set_timeout 0 releases the locks once the connection is closed`, async () => {
    await using h = await serve("original", store);
    const [a, b] = [await h.connect(), await h.connect()];
    assert.equal(await a.line.request("set_timeout 0"), "200 timeout set\r");
    assert.equal(await a.line.request("lock q"), "200 Acquired\r");
    assert.equal(await a.line.request("quit"), "200 Hey, it was nice seeing you.\r");
    assert.equal(await a.line.waitEnd(), true);
    await h.disconnected(a.name);
    assert.equal(await b.line.request("lock q"), "200 Acquired\r");
  });

  test(`startServer() [original${on}] quit ignores the commands pipelined after it`, async () => {
    await using h = await serve("original", store);
    const a = await h.connect();
    await a.line.write("quit\nlock z\nconn_id\n");
    assert.equal(await a.line.line(), "200 Hey, it was nice seeing you.\r");
    assert.equal(await a.line.lineOrNull(2000), null);
    assert.equal(a.line.ended, true);
    const b = await h.connect();
    assert.equal(await b.line.request("lock z"), "200 Acquired\r");
  });

  test(`startServer() [extended${on}] quit answers 200 OK, releases every lock and keeps the connection`, async () => {
    await using h = await serve("extended", store);
    const [a, b] = [await h.connect(), await h.connect()];
    assert.equal(await a.line.request("lock q"), "200 Lock acquired");
    assert.equal(await a.line.request("lock_value v red"), "200 Lock acquired");
    assert.equal(await a.line.request("quit"), "200 OK");
    assert.equal(await a.line.waitEnd(300), false);
    assert.equal(await b.line.request("lock q"), "200 Lock acquired");
    assert.equal(await b.line.request("lock v"), "200 Lock acquired");
    assert.equal(await a.line.request("conn_id"), `200 ${a.id}`);
    assert.equal(await a.line.request("lock q"), `409 Already locked by #${b.name}`);
    assert.equal(await a.line.request("lock q2"), "200 Lock acquired");
    assert.equal(a.line.ended, false);
  });

  test(`startServer() [extended${on}] quit hands the released keys to their waiters`, async () => {
    await using h = await serve("extended", store);
    const [a, b] = [await h.connect(), await h.connect()];
    assert.equal(await a.line.request("lock q"), "200 Lock acquired");
    b.line.send("lock q 10");
    await h.queued(b, "q");
    assert.equal(await a.line.request("quit"), "200 OK");
    assert.equal(await b.line.line(), "200 Lock acquired");
  });

  test(`startServer() [extended${on}] grants a value lock to every waiter for the granted value, even non-adjacent`, async () => {
    await using h = await serve("extended", store);
    const [a, b, c, d, e] = [
      await h.connect(),
      await h.connect(),
      await h.connect(),
      await h.connect(),
      await h.connect(),
    ];
    assert.equal(await a.line.request("lock_value v red"), "200 Lock acquired");
    b.line.send("lock_value v blue 10");
    await h.queued(b, "v");
    c.line.send("lock_value v green 10");
    await h.queued(c, "v");
    d.line.send("lock_value v blue 10");
    await h.queued(d, "v");
    assert.equal(await a.line.request("unlock v"), "200 Lock released");
    assert.equal(await b.line.line(), "200 Lock acquired");
    assert.equal(await d.line.line(), "200 Lock acquired");
    await quiet(c);
    assert.equal(
      await e.line.request("lock_value v green"),
      `409 Already locked by #${b.name}, #${d.name} (blue)`,
    );
    assert.equal(await b.line.request("unlock v"), "200 Lock released");
    await quiet(c);
    assert.equal(await d.line.request("unlock_all"), "200 OK");
    assert.equal(await c.line.line(), "200 Lock acquired");
    assert.equal(await e.line.request("lock_value v green"), "200 Lock acquired");
    assert.equal(
      await a.line.request("lock_value v red"),
      `409 Already locked by #${c.name}, #${e.name} (green)`,
    );
  });

  test(`startServer() [extended${on}] answers 500 between exclusive and value locks and 409 at once to a holder asking another value`, async () => {
    await using h = await serve("extended", store);
    const [a, b] = [await h.connect(), await h.connect()];
    assert.equal(await a.line.request("lock x"), "200 Lock acquired");
    assert.equal(await b.line.request("lock_value x red 5"), "500 Internal server error");
    assert.equal(await a.line.request("lock_value x red"), "500 Internal server error");
    assert.equal(await a.line.request("lock_value v red"), "200 Lock acquired");
    assert.equal(await b.line.request("lock_value v red 5"), "200 Lock acquired");
    assert.equal(await b.line.request("lock v 5"), "500 Internal server error");
    assert.equal(
      await a.line.request("lock_value v green 5"),
      `409 Already locked by #${a.name}, #${b.name} (red)`,
    );
    assert.equal(await a.line.request("lock_value v red 5"), "200 Lock acquired");
    assert.equal(
      await b.line.request("unlock x"),
      `403 Locked by #${a.name}`,
    );
    const c = await h.connect();
    assert.equal(await c.line.request("unlock v"), `403 Locked by #${a.name}, #${b.name}`);
    assert.equal(await c.line.request("unlock never-locked"), "200 Lock released");
  });

  for (const n of [2, 3, 4, 5]) {
    test(`startServer() [extended${on}] answers a deadlock cycle of ${n} with its exact path, also for a 0-second wait`, async () => {
      await using h = await serve("extended", store);
      const all: Client[] = [];
      for (let i = 0; i < n; i++) all.push(await h.connect());
      if (store === "memory") {
        assert.deepEqual(
          all.map((c) => c.id),
          all.map((_, i) => String(i + 1)),
        );
      }
      for (const [i, c] of all.entries()) {
        assert.equal(await c.line.request(`lock e${i + 1}`), "200 Lock acquired");
      }
      for (const [i, c] of all.slice(0, -1).entries()) {
        c.line.send(`lock e${i + 2} 10`);
        await h.queued(c, `e${i + 2}`);
      }
      const last = all[n - 1]!;
      let path = `#${last.name}`;
      for (let i = 1; i <= n; i++) path += ` => e${i} = #${all[i - 1]!.name}`;
      assert.equal(await last.line.request("lock e1 5"), `423 Deadlock: ${path}`);
      assert.equal(await last.line.request("lock e1 0"), `423 Deadlock: ${path}`);
      assert.equal(await last.line.request("lock e1"), `423 Deadlock: ${path}`);
      assert.equal(await last.line.request(`unlock e${n}`), "200 Lock released");
      assert.equal(await all[n - 2]!.line.line(), "200 Lock acquired");
    });
  }

  test(`startServer() [extended${on}] deadlock_three: the path names each edge's own key`, async () => {
    await using h = await serve("extended", store);
    const [a, b, c] = [await h.connect(), await h.connect(), await h.connect()];
    assert.equal(await a.line.request("lock e1"), "200 Lock acquired");
    assert.equal(await b.line.request("lock e2"), "200 Lock acquired");
    assert.equal(await c.line.request("lock e3"), "200 Lock acquired");
    a.line.send("lock e2 5");
    await h.queued(a, "e2");
    b.line.send("lock e3 5");
    await h.queued(b, "e3");
    assert.equal(
      await c.line.request("lock e1 5"),
      `423 Deadlock: #${c.name} => e1 = #${a.name} => e2 = #${b.name} => e3 = #${c.name}`,
    );
    assert.equal(await c.line.request("unlock e3"), "200 Lock released");
    assert.equal(await b.line.line(), "200 Lock acquired");
    await quiet(a);
  });

  test(`startServer() [original${on}] never answers 423: a wait that closes a cycle times out as 409`, async () => {
    await using h = await serve("original", store);
    const [a, b] = [await h.connect(), await h.connect()];
    assert.equal(await a.line.request("lock d1"), "200 Acquired\r");
    assert.equal(await b.line.request("lock d2"), "200 Acquired\r");
    a.line.send("lock d2 10");
    await h.queued(a, "d2");
    assert.equal(await b.line.request("lock d1 0"), "409 Unavailable\r");
    assert.equal(await b.line.request("lock d1 1", 5000), "409 Unavailable\r");
    assert.equal(await b.line.request("unlock d2"), "200 Unlocked\r");
    assert.equal(await a.line.line(), "200 Acquired\r");
  });

  test(`startServer() [original${on}] lock_value and debug are unknown commands`, async () => {
    await using h = await serve("original", store);
    const a = await h.connect();
    assert.equal(await a.line.request("lock_value v red"), '400 Unknown command: "lock_value"\r');
    assert.equal(await a.line.request("lock_value v red 5"), '400 Unknown command: "lock_value"\r');
    assert.equal(await a.line.request("debug"), '400 Unknown command: "debug"\r');
  });

  test(`startServer() [original${on}] accepts conn_id ID only as the very first command of a connection`, async () => {
    await using h = await serve("original", store);
    const [a, b] = [await h.connect(), await h.connect()];
    assert.equal(await a.line.request("set_timeout 5000"), "200 timeout set\r");
    assert.equal(await a.line.request("lock r"), "200 Acquired\r");
    await a.line.close();
    await h.disconnected(a.name);
    // Any command first, even set_timeout or conn_id, binds the connection.
    for (const first of ["set_timeout 1000", "conn_id", "lock x", "unlock_all"]) {
      const m = await h.connect(false);
      assert.match(await m.line.request(first), /^200 /);
      assert.equal(await m.line.request(`conn_id ${a.id}`), "403 cannot set conn id\r", first);
      assert.equal(await m.line.request("unlock r"), "403 not_yours\r");
      await m.line.close();
    }
    // Still resumable as a first command.
    const n = await h.connect(false);
    assert.equal(await n.line.request(`conn_id ${a.id}`), "200 conn id set\r");
    assert.equal(await n.line.request("unlock r"), "200 Unlocked\r");
    assert.equal(await b.line.request("lock r"), "200 Acquired\r");
    // A second conn_id ID on the resumed connection is refused.
    assert.equal(await n.line.request(`conn_id ${a.id}`), "403 cannot set conn id\r");
  });

  test(`startServer() [original${on}] refuses to resume a session that is still connected`, async () => {
    await using h = await serve("original", store);
    const a = await h.connect();
    const m = await h.connect(false);
    assert.equal(await m.line.request(`conn_id ${a.id}`), "403 cannot set conn id\r");
    assert.equal(await a.line.request("lock k"), "200 Acquired\r");
    assert.equal(await m.line.request("lock k"), "409 Unavailable\r");
  });

  test(`startServer() [extended${on}] resumes at any point of a connection, and words each refusal`, async () => {
    await using h = await serve("extended", store);
    const [a, b] = [await h.connect(), await h.connect()];
    assert.equal(await a.line.request("set_timeout 5000"), "200 OK");
    assert.equal(await a.line.request("lock r"), "200 Lock acquired");
    // Still active.
    assert.equal(
      await b.line.request(`conn_id ${a.id}`),
      "403 Can not resume connection - it is still active",
    );
    // Own id.
    assert.equal(await b.line.request(`conn_id ${b.id}`), "200 Resumed");
    await a.line.close();
    await h.disconnected(a.name);
    // This connection already holds locks.
    assert.equal(await b.line.request("lock x"), "200 Lock acquired");
    assert.equal(
      await b.line.request(`conn_id ${a.id}`),
      "403 Can not resume connection - current connection already acquired locks",
    );
    // Unknown id.
    const n = await h.connect();
    assert.equal(
      await n.line.request("conn_id 424242"),
      "403 Can not resume connection - it is already disposed",
    );
    // Not first, but holding nothing: accepted.
    assert.equal(await n.line.request("set_timeout 1000"), "200 OK");
    assert.equal(await n.line.request(`conn_id ${a.id}`), "200 Resumed");
    assert.equal(await n.line.request("conn_id"), `200 ${a.id}`);
    assert.equal(await b.line.request("lock r"), `409 Already locked by #${a.name}`);
    assert.equal(await n.line.request("unlock r"), "200 Lock released");
    assert.equal(await b.line.request("lock r"), "200 Lock acquired");
  });

  test(`startServer() [extended${on}] debug lists the waiters, which leave it on disconnect`, async () => {
    await using h = await serve("extended", store);
    const [a, b, c] = [await h.connect(), await h.connect(), await h.connect()];
    assert.equal(await a.line.request("lock k"), "200 Lock acquired");
    b.line.send("lock k 10");
    await h.queued(b, "k");
    c.line.send("lock k 10");
    await h.queued(c, "k");
    const lines = await debug(a.line);
    assert.deepEqual(lines.filter((l) => !l.startsWith("SESSION ")), [
      `LOCK k #${a.name}`,
      `REQUEST #${b.name} k`,
      `REQUEST #${c.name} k`,
    ]);
    await b.line.close();
    await h.disconnected(b.name);
    assert.deepEqual((await debug(a.line)).filter((l) => !l.startsWith("SESSION ")), [
      `LOCK k #${a.name}`,
      `REQUEST #${c.name} k`,
    ]);
    assert.equal(await a.line.request("unlock k"), "200 Lock released");
    assert.equal(await c.line.line(), "200 Lock acquired");
  });
}
