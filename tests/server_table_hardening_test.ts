/**
 * The bundled server's lock table under load and attack (issue 12): a wait
 * chain as long as the machine allows connections (20,000 where the
 * descriptor limit lets a process open that many) does not overflow the
 * deadlock search; real cycles are still answered 423 with the usual path;
 * the ids the extended dialect prints are public names that do not resume;
 * `stats` stays exact through random traffic; per-session and per-key limits;
 * the grace period after start.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { ELockClient } from "../mod.ts";
import { parseServerArgs } from "../src/cli/server_command.ts";
import { UsageError } from "../src/cli/subcommand.ts";
import { isSessionName, sessionName } from "../mod.ts";
import { type Dialect, type ServerEvent, startServer } from "../src/server/mod.ts";
import { type LockResult, LockTable, type Session } from "../src/server/lock_table.ts";
import { DeadlockError } from "../src/errors.ts";
import { Cli } from "./support/cli_process.ts";
import { LineClient } from "./support/line_client.ts";
import { random } from "./support/random.ts";
import { runProcess } from "./support/run_process.ts";
import { until } from "./support/wait.ts";

const DIALECTS: readonly Dialect[] = ["original", "extended"];
const CHAIN = 20_000;
/** Descriptors kept free for the runtime itself, in the test process and in the server's. */
const SPARE_DESCRIPTORS = 300;

/** The per-process descriptor limit (`ulimit -n`), which the server child inherits. */
async function descriptorLimit(): Promise<number> {
  const { stdout } = await runProcess("sh", ["-c", "ulimit -n"]);
  const limit = Number(stdout.trim());
  return Number.isFinite(limit) ? limit : Infinity; // "unlimited"
}

/** Opens `n` connections, `batch` at a time. */
async function connectMany(port: number, n: number, batch = 500): Promise<LineClient[]> {
  const clients: LineClient[] = [];
  for (let i = 0; i < n; i += batch) {
    const count = Math.min(batch, n - i);
    clients.push(
      ...await Promise.all(Array.from({ length: count }, () => LineClient.connect(port))),
    );
  }
  return clients;
}

test(
  "[extended] a wait chain of 20,000 sessions (as many as descriptors allow) keeps the server up",
  { timeout: 900_000 },
  async () => {
    const limit = await descriptorLimit();
    // One connection per link, in this process and in the server's: both under the limit.
    const n = Math.min(CHAIN, limit - SPARE_DESCRIPTORS);
    assert.ok(n >= 8_000, `the descriptor limit (${limit}) allows a chain of ${n} only`);
    if (n < CHAIN) console.log(`chain of ${n} sessions (descriptor limit ${limit})`);
    // The server runs as a child (`elock server`): its own descriptors and stack.
    const cli = new Cli(["server", "--port", "0"]);
    let waits = 0;
    let partial = "";
    let stopped = false;
    void cli.exited.then(() => stopped = true, () => stopped = true);
    /** A count of waits, failing at once if the server has stopped. */
    const waitCount = () => {
      if (stopped) throw new Error(`the server stopped:\n${cli.stderr.slice(-2000)}`);
      return waits;
    };
    cli.child.stderr!.on("data", (text: string) => {
      const lines = (partial + text).split("\n");
      partial = lines.pop()!;
      for (const line of lines) if (line.includes(" waits for ")) waits++;
    });
    const clients: LineClient[] = [];
    try {
      const match = await cli.waitForStderr(/^elock: extended server listening on [^:]+:(\d+)$/);
      const port = Number(match[1]);
      const links = await connectMany(port, n);
      clients.push(...links);
      // Pipelined: every link asks its id and takes its key k<i>.
      for (const [i, link] of links.entries()) link.send(`conn_id\nlock k${i}`);
      const names: string[] = [];
      for (const [i, link] of links.entries()) {
        const id = /^200 (\S+)$/.exec(await link.line(60_000))?.[1];
        assert.ok(id !== undefined, `link ${i} has an id`);
        names.push(sessionName(id));
        assert.equal(await link.line(60_000), "200 Lock acquired", `link ${i} takes k${i}`);
      }
      // Link i waits for k<i+1>, held by link i+1; sent from the end of the
      // chain to its start, the order in which each new wait used to walk
      // the whole chain built so far.
      for (let i = n - 2; i >= 0; i--) links[i]!.send(`lock k${i + 1} 600`);
      // x holds kx, which y waits for; then x waits for k0: the search walks
      // the whole chain (no cycle: its end does not wait).
      const [x, y, probe] = await connectMany(port, 3);
      clients.push(x!, y!, probe!);
      assert.equal(await x!.request("lock kx"), "200 Lock acquired");
      y!.send("lock kx 600");
      await until(() => waitCount() === n, "y and every link but the last wait", 120_000);
      x!.send("lock k0 600");
      await until(() => waitCount() === n + 1, "x waits for k0 behind the whole chain", 120_000);
      // The chain's end closes the cycle: found through all n sessions.
      const last = n - 1;
      links[last]!.send("lock k0 600");
      // #L => k0 = #0 => k1 = #1 => k2 = ... = #(L-1) => k<L> = #L
      let expected = `423 Deadlock: #${names[last]} => k0`;
      for (let i = 0; i < last; i++) expected += ` = #${names[i]} => k${i + 1}`;
      expected += ` = #${names[last]}`;
      const reply = await links[last]!.line(120_000);
      assert.equal(reply.slice(0, 200), expected.slice(0, 200));
      assert.equal(reply.length, expected.length);
      assert.equal(reply, expected);
      // Still up and answering, and the table is intact.
      assert.equal(await probe!.request("stats", 60_000), "200 STATS");
      assert.equal(await probe!.line(), `STAT clients ${n + 3}`);
      assert.equal(await probe!.line(), `STAT locks ${n + 1}`);
      // The chain unwinds: the end lets go of its key, its waiter gets it.
      assert.equal(await links[last]!.request("unlock_all"), "200 OK");
      assert.equal(await links[last - 1]!.line(60_000), "200 Lock acquired");
      cli.signal("SIGTERM");
      assert.equal(await cli.exit(), 0, "the server stops cleanly: it never failed");
    } finally {
      await cli.dispose();
      await Promise.all(clients.map((c) => c.close()));
    }
  },
);

test("LockTable: a wait chain of exactly 20,000 sessions, built end to start, then closed into a cycle", async () => {
  // In process, no sockets: the chain of the issue at its full length, whatever the descriptor limit.
  const table = new LockTable({ detectDeadlocks: true });
  try {
    const sessions = Array.from({ length: CHAIN }, () => table.createSession());
    for (const [i, session] of sessions.entries()) {
      assert.deepEqual(table.lock(session, `k${i}`, null, 0), { kind: "acquired" });
    }
    const waits: Promise<unknown>[] = [];
    for (let i = CHAIN - 2; i >= 0; i--) {
      const result = table.lock(sessions[i]!, `k${i + 1}`, null, 600_000);
      assert.ok(result instanceof Promise, `link ${i} waits`);
      waits.push(result);
    }
    const last = CHAIN - 1;
    const closing = table.lock(sessions[last]!, "k0", null, 600_000);
    assert.ok(!(closing instanceof Promise) && closing.kind === "deadlock", "the cycle is found");
    let expected = `#${sessions[last]!.id} => k0`;
    for (let i = 0; i < last; i++) expected += ` = #${sessions[i]!.id} => k${i + 1}`;
    expected += ` = #${sessions[last]!.id}`;
    assert.equal(closing.path, expected);
    table.unlockAll(sessions[last]!);
    assert.deepEqual(await waits[0], { kind: "acquired" }, "the link next to the end gets its key");
  } finally {
    table.close();
  }
});

/** The secret id of a line client (`conn_id`). */
async function idOf(client: LineClient, eol = ""): Promise<string> {
  const match = /^200 (\S+?)(\r?)$/.exec(await client.request("conn_id"));
  assert.ok(match !== null && match[2] === eol, "conn_id answers 200 ID");
  return match[1]!;
}

test("[extended] a cycle of three is answered 423 with public names, and the client sees itself", async () => {
  const events: ServerEvent[] = [];
  await using server = await startServer({ port: 0, onEvent: (e) => events.push(e) });
  await using a = await LineClient.connect(server.port);
  await using b = await LineClient.connect(server.port);
  await using c = await ELockClient.connect({ port: server.port });
  const [ida, idb, idc] = [await idOf(a), await idOf(b), await c.sessionId()];
  assert.equal(await a.request("lock e1"), "200 Lock acquired");
  assert.equal(await b.request("lock e2"), "200 Lock acquired");
  assert.equal(await c.lock("e3"), true);
  a.send("lock e2 30");
  b.send("lock e3 30");
  await until(() => events.filter((e) => e.type === "wait").length === 2, "a and b wait");
  const [na, nb, nc] = [ida, idb, idc].map(sessionName);
  const error = await c.lock("e1", { timeout: 30_000 }).then(
    () => assert.fail("c's wait closes a cycle"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof DeadlockError);
  assert.equal(error.path, `#${nc} => e1 = #${na} => e2 = #${nb} => e3 = #${nc}`);
  assert.ok(isSessionName(error.cycle[0]!.session, idc), "c recognises itself in the path");
  assert.ok(!isSessionName(error.cycle[1]!.session, idc));
  // A 0-second wait that would close it is answered 423 too.
  assert.equal(await c.command("lock e1 0").then((r) => r.code), 423);
  await c.unlock("e3");
  assert.equal(await b.line(), "200 Lock acquired");
});

for (const dialect of DIALECTS) {
  const eol = dialect === "original" ? "\r" : "";
  const refused = dialect === "original"
    ? "403 cannot set conn id\r"
    : "403 Can not resume connection - it is already disposed";
  const resumed = dialect === "original" ? "200 conn id set\r" : "200 Resumed";

  test(`[${dialect}] a public name never resumes a session; only its secret id does`, async () => {
    const events: ServerEvent[] = [];
    await using server = await startServer({
      port: 0,
      dialect,
      verbose: true,
      onEvent: (e) => events.push(e),
    });
    const owner = await LineClient.connect(server.port);
    const secret = await idOf(owner, eol);
    const name = sessionName(secret);
    assert.notEqual(name, secret);
    assert.equal(
      await owner.request("lock k"),
      dialect === "original" ? "200 Acquired\r" : "200 Lock acquired",
    );
    await owner.close(); // its session keeps k for 30 s
    await until(() => events.some((e) => e.type === "disconnect"), "the owner's disconnect");
    await using other = await LineClient.connect(server.port);
    const otherSecret = await idOf(other, eol);
    if (dialect === "extended") {
      // What anyone can read: the owner's public name.
      assert.equal(await other.request("lock k"), `409 Already locked by #${name}`);
      assert.equal(await other.request("unlock k"), `403 Locked by #${name}`);
      const debug = [await other.request("debug")];
      while (debug.at(-1) !== "END") debug.push(await other.line());
      assert.ok(debug.includes(`LOCK k #${name}`), debug.join("\n"));
      assert.ok(!debug.some((line) => line.includes(secret)), "debug shows no secret");
    }
    // Resuming with the public name is refused, on a fresh connection each time.
    for (const attempt of [name, `#${name}`, sessionName(otherSecret)]) {
      await using thief = await LineClient.connect(server.port);
      assert.equal(await thief.request(`conn_id ${attempt}`), refused, attempt);
    }
    // The real owner's resume works, and it still holds k.
    await using back = await LineClient.connect(server.port);
    assert.equal(await back.request(`conn_id ${secret}`), resumed);
    assert.equal(await back.request("conn_id"), `200 ${secret}${eol}`);
    assert.equal(
      await other.request("lock k"),
      dialect === "original" ? "409 Unavailable\r" : `409 Already locked by #${name}`,
    );
    // No event (connect, resume, command...) carries a secret id.
    const logged = JSON.stringify(events);
    assert.ok(logged.includes(name), "events name the owner by its public name");
    assert.ok(!logged.includes(secret), "no event carries the owner's secret id");
    assert.ok(!logged.includes(otherSecret), "no event carries another secret id");
  });
}

test("sessionName() is a stable 12-character base64url name, never a 16-character id", () => {
  assert.equal(sessionName("abc"), "qZk-NkcGgWq6"); // SHA-1 a9993e36 4706816a ba...
  const table = new LockTable();
  for (let i = 0; i < 200; i++) {
    const s = table.createSession();
    assert.match(s.secret, /^[A-Za-z0-9_-]{16}$/);
    assert.match(s.id, /^[A-Za-z0-9_-]{12}$/);
    assert.equal(s.id, sessionName(s.secret));
    assert.equal(table.resume(table.createSession(), s.id).result, "unknown");
  }
  table.close();
});

/** Recounts what the table's counters claim, and each session's contested keys. */
function recount(table: LockTable): void {
  let locked = 0;
  let waiting = 0;
  const contested = new Map<Session, number>();
  for (const state of table.keys.values()) {
    if (state.holders.size > 0) locked++;
    waiting += state.queue.length;
    if (state.queue.length > 0) {
      for (const h of state.holders) contested.set(h, (contested.get(h) ?? 0) + 1);
    }
    assert.ok(state.holders.size > 0 || state.queue.length > 0, "no empty key state is kept");
  }
  assert.equal(table.lockCount, locked, "lockCount");
  assert.equal(table.waitingCount, waiting, "waitingCount");
  for (const s of table.sessions.values()) {
    assert.equal(s.contested, contested.get(s) ?? 0, `contested keys of #${s.id}`);
  }
}

test("LockTable counters (locks, waits, contested keys) match a recount through random traffic", async () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const rand = random(seed);
    const table = new LockTable({ sequentialIds: true });
    const open: Session[] = [];
    const pending: Promise<LockResult>[] = [];
    const keys = ["a", "b", "c", "d"];
    const values = [null, null, "red", "blue"];
    try {
      for (let step = 0; step < 2_000; step++) {
        const op = rand.int(0, 9);
        if (open.length === 0 || op === 0) {
          open.push(table.createSession());
          continue;
        }
        const s = open[rand.int(0, open.length - 1)]!;
        const key = keys[rand.int(0, keys.length - 1)]!;
        if (op <= 3 && s.waiting === null) {
          const result = table.lock(
            s,
            key,
            values[rand.int(0, values.length - 1)]!,
            rand.int(0, 1) * 60_000,
          );
          if (result instanceof Promise) pending.push(result);
        } else if (op <= 5) {
          table.unlock(s, key);
        } else if (op === 6) {
          table.unlockAll(s);
        } else if (op === 7) {
          table.cancelWait(s);
        } else if (op === 8) {
          open.splice(open.indexOf(s), 1);
          s.releaseTimeout = rand.int(0, 1) * 60_000;
          table.disconnect(s);
        } else {
          open.splice(open.indexOf(s), 1);
          table.dispose(s);
        }
        recount(table);
      }
    } finally {
      table.close();
    }
    await Promise.all(pending);
  }
});

/** A model of who holds which key (exclusive locks), and who waits, FIFO. */
interface Model {
  readonly held: Map<string, number>;
  readonly queues: Map<string, number[]>;
}

for (const dialect of DIALECTS) {
  const r = dialect === "original"
    ? { eol: "\r", acquired: "200 Acquired\r", unavailable: /^409 Unavailable\r$/ }
    : { eol: "", acquired: "200 Lock acquired", unavailable: /^409 Already locked by #\S+$/ };

  test(`[${dialect}] stats stays exact through random lock, unlock, wait and disconnect`, {
    timeout: 300_000,
  }, async () => {
    const events: ServerEvent[] = [];
    await using server = await startServer({ port: 0, dialect, onEvent: (e) => events.push(e) });
    const rand = random(12);
    const keys = ["k0", "k1", "k2", "k3", "k4"];
    const model: Model = { held: new Map(), queues: new Map() };
    const clients: (LineClient | null)[] = [];
    const waitingFor = new Map<number, string>();
    await using probe = await LineClient.connect(server.port);
    const stats = async () => {
      const lines = [await probe.request("stats")];
      while (lines.at(-1) !== `END${r.eol}`) lines.push(await probe.line());
      const value = (name: string) =>
        Number(lines.find((l) => l.startsWith(`STAT ${name} `))!.slice(6 + name.length));
      return { clients: value("clients"), locks: value("locks") };
    };
    const open = () => clients.flatMap((c, i) => c === null ? [] : [i]);
    /** Hands `key` to its first model waiter, whose reply must then say so. */
    const release = async (key: string) => {
      model.held.delete(key);
      const next = model.queues.get(key)?.shift();
      if (next === undefined) return;
      model.held.set(key, next);
      waitingFor.delete(next);
      assert.equal(await clients[next]!.line(), r.acquired, `#${next} gets ${key}`);
    };
    const connect = async () => {
      const client = await LineClient.connect(server.port);
      assert.match(await client.request("set_timeout 0"), /^200 /);
      clients.push(client);
    };
    try {
      for (let i = 0; i < 4; i++) await connect();
      for (let step = 0; step < 250; step++) {
        const live = open();
        const c = live[rand.int(0, live.length - 1)]!;
        const client = clients[c]!;
        const key = keys[rand.int(0, keys.length - 1)]!;
        const op = rand.int(0, 9);
        const holds = [...model.held].some(([, holder]) => holder === c);
        if (op === 0 || live.length < 2) {
          await connect();
        } else if (op <= 2) {
          // Disconnect (release timeout 0): its wait is withdrawn, its locks go.
          clients[c] = null;
          const waited = waitingFor.get(c);
          if (waited !== undefined) {
            const queue = model.queues.get(waited)!;
            queue.splice(queue.indexOf(c), 1);
            waitingFor.delete(c);
          }
          await client.close();
          const mine = [...model.held].filter(([, holder]) => holder === c).map(([k]) => k);
          for (const k of mine) await release(k);
        } else if (waitingFor.has(c)) {
          continue; // a waiting connection sends nothing more
        } else if (op <= 5) {
          const reply = await client.request(`lock ${key}`);
          const holder = model.held.get(key);
          if (holder === undefined || holder === c) {
            assert.equal(reply, r.acquired, `#${c} lock ${key}`);
            model.held.set(key, c);
          } else {
            assert.match(reply, r.unavailable, `#${c} lock ${key} held by #${holder}`);
          }
        } else if (op <= 7) {
          const reply = await client.request(`unlock ${key}`);
          assert.match(reply, /^(200|403) /);
          if (model.held.get(key) === c) await release(key);
        } else {
          // Waits only when it holds nothing: no cycle, so no 423 to model.
          const holder = model.held.get(key);
          if (holds || holder === undefined || holder === c) continue;
          client.send(`lock ${key} 60`);
          waitingFor.set(c, key);
          model.queues.set(key, [...(model.queues.get(key) ?? []), c]);
          const count = events.filter((e) => e.type === "wait").length;
          await until(() => events.filter((e) => e.type === "wait").length > count, "the wait");
        }
        // Disconnects are seen by the server on its own time: wait for the
        // sessions to match, then the figures must be exact.
        const sessions = open().length + 1;
        await until(async () => (await stats()).clients === sessions, `${sessions} sessions`);
        assert.deepEqual(
          await stats(),
          { clients: sessions, locks: model.held.size },
          `step ${step}`,
        );
      }
    } finally {
      await Promise.all(clients.map((c) => c?.close()));
    }
  });
}

for (const dialect of DIALECTS) {
  const o = dialect === "original";
  const r = {
    acquired: o ? "200 Acquired\r" : "200 Lock acquired",
    unavailable: o ? /^409 Unavailable\r$/ : /^409 Already locked by #\S+$/,
    held: o
      ? "400 Too many keys held by this session (limit 3)\r"
      : "500 Too many keys held by this session (limit 3)",
    waiters: o
      ? "400 Too many waiters for this key (limit 2)\r"
      : "500 Too many waiters for this key (limit 2)",
    released: o ? "200 Unlocked\r" : "200 Lock released",
    grace: o ? "409 Unavailable\r" : "409 Not granted during the grace period after start",
  };

  test(`[${dialect}] a session holds at most maxHeldKeys keys; a key has at most maxWaitersPerKey waiters`, async () => {
    const events: ServerEvent[] = [];
    await using server = await startServer({
      port: 0,
      dialect,
      maxHeldKeys: 3,
      maxWaitersPerKey: 2,
      onEvent: (e) => events.push(e),
    });
    const [a, b, c, d] = await Promise.all([1, 2, 3, 4].map(() => LineClient.connect(server.port)));
    try {
      for (const key of ["k1", "k2", "k3"]) {
        assert.equal(await a!.request(`lock ${key}`), r.acquired);
      }
      assert.equal(await a!.request("lock k4"), r.held, "a fourth key is refused");
      assert.equal(await a!.request("lock k4 5"), r.held, "also with a wait");
      assert.equal(await a!.request("lock k2"), r.acquired, "a held key is still re-entrant");
      assert.equal(await a!.request("unlock k3"), r.released);
      assert.equal(await a!.request("lock k4"), r.acquired, "under the limit again");
      // Two waiters for k1; a third is refused at once, a no-wait lock is still 409.
      b!.send("lock k1 30");
      c!.send("lock k1 30");
      await until(() => events.filter((e) => e.type === "wait").length === 2, "b and c wait");
      assert.equal(await d!.request("lock k1 30"), r.waiters);
      assert.match(await d!.request("lock k1"), r.unavailable);
      // The queue moves on: b, then c, in order.
      assert.equal(await a!.request("unlock k1"), r.released);
      assert.equal(await b!.line(), r.acquired);
      assert.equal(await b!.request("unlock k1"), r.released);
      assert.equal(await c!.line(), r.acquired);
    } finally {
      await Promise.all([a, b, c, d].map((x) => x!.close()));
    }
  });

  test(`[${dialect}] during the grace period no key is granted, with or without a wait`, async () => {
    // Long: every step below falls inside it, however slow the machine.
    await using server = await startServer({ port: 0, dialect, graceMs: 120_000 });
    const [a, b] = await Promise.all([1, 2].map(() => LineClient.connect(server.port)));
    try {
      assert.equal(await a!.request("lock k"), r.grace, "a lock without a wait is refused");
      assert.equal(await b!.request("lock k 1"), r.grace, "a wait that ends within it too");
      assert.equal(await a!.request("lock k"), r.grace, "and nothing was granted meanwhile");
    } finally {
      await Promise.all([a, b].map((x) => x!.close()));
    }
  });

  test(`[${dialect}] waits sent during the grace period are granted after it, in order`, async () => {
    await using server = await startServer({ port: 0, dialect, graceMs: 1_000 });
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => LineClient.connect(server.port)));
    try {
      // Whether or not the grace is still on when they arrive, the outcome is the same.
      a!.send("lock k 60");
      assert.equal(await a!.line(30_000), r.acquired);
      b!.send("lock k 60");
      c!.send("lock j 60");
      assert.equal(await c!.line(30_000), r.acquired);
      assert.match(await c!.request("lock k"), r.unavailable, "a holds k, b still waits");
      assert.equal(await a!.request("unlock k"), r.released);
      assert.equal(await b!.line(), r.acquired);
      assert.equal(
        await a!.request("lock fresh"),
        r.acquired,
        "after it, locks are granted at once",
      );
    } finally {
      await Promise.all([a, b, c].map((x) => x!.close()));
    }
  });
}

test("LockTable grace: nothing is granted before it ends, then waiters in FIFO order", async () => {
  // The synchronous steps below take microseconds: well inside the grace.
  const table = new LockTable({ sequentialIds: true, graceMs: 1_000 });
  try {
    const [a, b, c] = [table.createSession(), table.createSession(), table.createSession()];
    assert.equal(table.inGrace, true);
    assert.deepEqual(table.lock(a, "k", null, 0), { kind: "grace" });
    assert.deepEqual(table.lock(a, "v", "red", 0), { kind: "grace" });
    const order: string[] = [];
    const waits = [
      [a, "k", null],
      [b, "k", null],
      [b, "v", "red"],
      [c, "v", "red"],
    ] as const;
    const results = waits.map(([s, key, value]) => {
      if (s === b && key === "v") return null; // b already waits for k
      const result = table.lock(s, key, value, 60_000);
      assert.ok(result instanceof Promise, `${s.id} waits for ${key}`);
      return result.then((res) => {
        order.push(`${s.id} ${key} ${res.kind}`);
        return res;
      });
    });
    assert.equal(table.lockCount, 0);
    assert.equal(table.waitingCount, 3);
    assert.deepEqual(table.unlock(a, "k"), { kind: "not_locked" });
    await Promise.all([results[0], results[3]]);
    assert.equal(table.inGrace, false);
    assert.deepEqual(order.sort(), ["1 k acquired", "3 v acquired"]);
    assert.deepEqual(table.unlock(a, "k"), { kind: "released" });
    assert.deepEqual(await results[1], { kind: "acquired" });
  } finally {
    table.close();
  }
});

test("elock server parses --max-held-keys, --max-waiters-per-key and --grace", () => {
  const options = parseServerArgs([
    "--max-held-keys",
    "10",
    "--max-waiters-per-key",
    "20",
    "--grace",
    "300",
  ]);
  assert.ok(options !== "help");
  assert.equal(options.maxHeldKeys, 10);
  assert.equal(options.maxWaitersPerKey, 20);
  assert.equal(options.graceMs, 300);
  const defaults = parseServerArgs([]);
  assert.ok(defaults !== "help");
  assert.equal(defaults.graceMs, undefined, "no grace period unless asked");
  for (const bad of [["--max-held-keys", "0"], ["--max-waiters-per-key", "x"], ["--grace", "-1"]]) {
    assert.throws(() => parseServerArgs(bad), UsageError, bad.join(" "));
  }
});
