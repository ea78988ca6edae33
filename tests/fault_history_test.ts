/**
 * A randomized fault test with a history checker, in the spirit of Jepsen.
 *
 * For each dialect: the bundled server and a fault proxy run in this
 * process; 3 worker processes (tests/support/fault_worker.ts, children of
 * the current runtime) each connect one shared client through the proxy
 * and run 8 concurrent tasks that take and release 3 keys with `withLock`,
 * `acquire` and a quick give-up then re-lock, and 2 other keys with raw
 * `lock`/`unlock`, with random timeouts and aborts. Meanwhile this process
 * injects faults on random proxy connections: cuts, drops (FIN), resets
 * (RST), stalls released after a random time, replies cut in the middle,
 * delays switched on and off, and half-dead links (the server's side
 * closed, the client's open and silent). The server itself restarts twice
 * (at a third and two thirds of the run), forgetting every session, with a
 * grace period as long as the release timeout.
 *
 * Then the same on the extended dialect against two servers on one etcd
 * (`elock server --store etcd` processes, each behind its own fault proxy;
 * the clients know both, `hosts`): the link faults on either, and three
 * times in the run one server is killed with SIGKILL and started again on
 * its port after a random pause. Sessions live in etcd: the clients resume
 * them on the other server, and a killed server's sessions go by their
 * leases.
 *
 * Each worker records every hold it believed it had, from the moment it
 * learned it held a key to the earlier of its release and the moment its
 * handle (or, for raw locks, its session) reported the lock lost
 * (tests/support/history.ts). Then the checker fails on:
 *
 * - two holds of one key by different holders that overlap by more than
 *   the clock tolerance (`OVERLAP_EPSILON_MS`, 5 ms: every process reads
 *   the same system clock with `Date.now()`, so the tolerance only covers
 *   rounding and the moment a timestamp is taken; it says nothing about
 *   speed);
 * - once the faults stopped and every worker is idle (its tasks done, its
 *   client on a live connection with every request answered), and after
 *   waiting out the release timeout of sessions whose connection died: a
 *   key the server still holds that no open hold claims (`debug` on the
 *   extended dialect, a probe `lock` of every key from a fresh client on
 *   the original one);
 * - a worker that made no progress (fewer than `MIN_HOLDS` holds released),
 *   a task still running long after the stop, an error no fault explains,
 *   a client that closed for good.
 *
 * The checker's own tests come first: a known bad history must fail.
 *
 * In the suite it runs with a fixed seed for 15 s of faults per dialect.
 * For long runs, set environment variables (node:test files cannot take
 * command-line flags the same way under `deno test`, `bun test` and
 * `node --test`):
 *
 * - `ELOCK_TEST_SEED=N`: the seed of the fault schedule and of every task's
 *   choices (the timing, so the exact history, still varies from run to run);
 * - `ELOCK_FAULT_DURATION=MS`: how long faults are injected, per dialect;
 * - `ELOCK_FAULT_TASKS=N`: tasks per worker (default 8; 1 leaves out the
 *   races between tasks of one client);
 * - `ELOCK_FAULT_KEYS=task`: each task of a worker takes its own handle key
 *   (`h<task>`, shared with the same task of the other workers) instead of
 *   any of 3, so no two tasks of one client ever hold one key and only
 *   what goes wrong across clients is left.
 *
 * ```sh
 * ELOCK_TEST_SEED=7 ELOCK_FAULT_DURATION=300000 deno test -A tests/fault_history_test.ts
 * ```
 *
 * Every failure message names the seed.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { ELockClient } from "../mod.ts";
import { type Dialect, startServer } from "../src/server/mod.ts";
import { DIALECTS } from "./support/client_server.ts";
import type { WorkerConfig, WorkerReport } from "./support/fault_worker.ts";
import {
  describeHold,
  describeOverlap,
  findOverlaps,
  type Hold,
  malformedHolds,
  type Overlap,
  type ServerLock,
  unclaimedLocks,
} from "./support/history.ts";
import { Cli } from "./support/cli_process.ts";
import { startEtcd } from "./support/etcd.ts";
import { type Proxy, startProxy } from "./support/proxy.ts";
import { envSeed, type Random, random } from "./support/random.ts";
import { sleep } from "./support/wait.ts";
import { sessionName } from "../mod.ts";

const SEED = envSeed() ?? 20_260_501;
const DURATION = positiveEnv("ELOCK_FAULT_DURATION") ?? 15_000;
const TASKS = positiveEnv("ELOCK_FAULT_TASKS") ?? 8;
const WORKERS = 3;
const KEY_PER_TASK = process.env.ELOCK_FAULT_KEYS === "task";
const HANDLE_KEYS = Array.from({ length: KEY_PER_TASK ? TASKS : 3 }, (_, i) => `h${i}`);
const RAW_KEYS = ["r0", "r1"];
const RELEASE_TIMEOUT = 2000;
const HEARTBEAT = 300;
const COMMAND_TIMEOUT = 600;
/** How long the tasks may take to finish after the stop. */
const DRAIN_LIMIT = 15_000;
/** Generous bound for a child of the runtime to start, or to exit when told. */
const PROCESS_WAIT = 30_000;
/** Fewer holds released than this by any worker: the run proves nothing. */
const MIN_HOLDS = 5;
const SEED_TEXT = `ELOCK_TEST_SEED=${SEED} ELOCK_FAULT_DURATION=${DURATION}` +
  (TASKS === 8 ? "" : ` ELOCK_FAULT_TASKS=${TASKS}`) +
  (KEY_PER_TASK ? " ELOCK_FAULT_KEYS=task" : "");

const WORKER_SCRIPT = fileURLToPath(
  new URL(
    "./support/fault_worker." + (import.meta.url.endsWith(".js") ? "js" : "ts"),
    import.meta.url,
  ),
);

console.log(`fault history: ${SEED_TEXT}`);

function positiveEnv(name: string): number | undefined {
  const value = Number(process.env[name]);
  return process.env[name] !== undefined && Number.isInteger(value) && value > 0
    ? value
    : undefined;
}

// ---------------------------------------------------------------------------
// The checker can fail.

const at = (
  id: string,
  key: string,
  holder: string,
  start: number,
  end: number | null,
  cut: Hold["cut"] = end === null ? "open" : "release",
): Hold => ({
  id,
  key,
  holder,
  worker: Number(holder.slice(1, 2)),
  op: "acquire",
  start,
  end,
  cut,
});

test("fault history checker: overlapping holds of one key fail", () => {
  const history = [
    at("a", "k", "w1/t0", 1000, 1100),
    at("b", "k", "w2/t0", 1050, 1200, "lost"),
    at("c", "k", "w1/t1", 1300, 1301), // 1 ms, well inside d
    at("d", "k", "w2/raw", 1250, 1400),
    at("e", "k", "w3/t0", 1500, null), // still claimed
    at("f", "k", "w1/t0", 1600, 1700),
  ];
  const overlaps = findOverlaps(history);
  assert.deepEqual(
    overlaps.map((o) => [o.first.id, o.second.id, o.ms, o.scope]),
    [["a", "b", 50, "across clients"], ["d", "c", 1, "across clients"], [
      "e",
      "f",
      100,
      "across clients",
    ]],
  );
  assert.match(describeOverlap(overlaps[0]!, 1000), /key k, 50 ms.*\[0\.\.100 release\].*lost/);
});

test("fault history checker: a clean history passes", () => {
  const history = [
    at("a", "k", "w1/t0", 1000, 1100),
    at("b", "k", "w2/t0", 1100, 1200), // starts as a ends
    at("c", "k", "w3/t0", 1197, 1300), // 3 ms early: within the clock tolerance
    at("d", "k", "w3/t0", 1250, 1260), // the same holder: not two holders
    at("e", "other", "w1/t1", 1000, 1300), // another key
    at("f", "k", "w1/t2", 1400, 1400, "lost"), // lost as it was granted: never held
    at("g", "k", "w2/t1", 1390, 1500),
    at("h", "k", "w1/t3", 1502, null),
  ];
  assert.deepEqual(findOverlaps(history), []);
  assert.deepEqual(malformedHolds(history), []);
  assert.deepEqual(malformedHolds([at("x", "k", "w1/t0", 10, 5)]).length, 1);
});

test("fault history checker: a lock the server holds that nobody claims is a leak", () => {
  const history = [at("a", "h0", "w1/t0", 0, 10), at("b", "h1", "w1/t1", 0, null)];
  const server: ServerLock[] = [{ key: "h0", holders: ["s1"] }, { key: "h1", holders: ["s1"] }];
  assert.deepEqual(unclaimedLocks(server, history), [{ key: "h0", holders: ["s1"] }]);
  assert.deepEqual(unclaimedLocks([{ key: "h1", holders: [] }], history), []);
});

// ---------------------------------------------------------------------------
// The run.

type Message = { type: "ready" } | ({ type: "hold" } & Hold) | WorkerReport;

/** A worker process, its stdout parsed as it arrives. */
class Worker {
  readonly child: ChildProcess;
  readonly holds: Hold[] = [];
  report: WorkerReport | null = null;
  ready = false;
  stderr = "";
  readonly exited: Promise<number | string>;
  #closed = false;
  #buffer = "";
  #wake: Array<() => void> = [];

  constructor(config: WorkerConfig) {
    const args = "Deno" in globalThis ? ["run", "-A", WORKER_SCRIPT] : [WORKER_SCRIPT];
    this.child = spawn(process.execPath, args, {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, ELOCK_FAULT_WORKER: JSON.stringify(config) },
    });
    this.child.stdin!.on("error", () => {});
    this.child.stdout!.setEncoding("utf8").on("data", (text: string) => {
      this.#buffer += text;
      let end: number;
      while ((end = this.#buffer.indexOf("\n")) >= 0) {
        const line = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 1);
        if (!line.startsWith("{")) continue;
        const message = JSON.parse(line) as Message;
        if (message.type === "ready") this.ready = true;
        else if (message.type === "hold") {
          const { type: _, ...hold } = message;
          this.holds.push(hold);
        } else this.report = message;
      }
      this.#notify();
    });
    this.child.stderr!.setEncoding("utf8").on("data", (text: string) => {
      this.stderr = (this.stderr + text).slice(-4000);
    });
    this.exited = new Promise((resolve) => {
      this.child.once("error", (error) => {
        this.stderr += String(error);
        resolve("spawn error");
      });
      this.child.once("close", (code, signal) => {
        this.#closed = true;
        this.#notify();
        resolve(code ?? signal ?? "unknown");
      });
    });
  }

  #notify(): void {
    for (const wake of this.#wake.splice(0)) wake();
  }

  /** Waits until `condition` holds; throws when the process ended first or `ms` passed. */
  async until(condition: () => boolean, what: string, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!condition()) {
      if (this.#closed) {
        throw new Error(`the worker exited before ${what}; stderr:\n${this.stderr}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${ms} ms; stderr:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.#wake.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  send(line: string): void {
    if (!this.#closed && this.child.stdin!.writable) this.child.stdin!.write(line + "\n");
  }

  /** Asks it to exit, then kills it if it has not within `ms`. */
  async dispose(ms: number): Promise<number | string> {
    this.send("exit");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const code = await Promise.race([
      this.exited,
      new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), ms)),
    ]);
    clearTimeout(timer);
    if (code !== null) return code;
    this.child.kill("SIGKILL");
    return await this.exited;
  }
}

const FAULTS = [
  ["cut", 2],
  ["drop", 2],
  ["reset", 2],
  ["stall", 3],
  ["cutMidReply", 2],
  ["delay", 1],
  ["halfDead", 2],
] as const;
type Fault = (typeof FAULTS)[number][0];

/** What the server still holds: `debug` (extended), or a probe `lock` of every key (original). */
async function serverLocks(dialect: Dialect, probe: ELockClient): Promise<ServerLock[]> {
  if (dialect === "extended") {
    return (await probe.debug()).locks.map(({ key, holders }) => ({ key, holders }));
  }
  const held: ServerLock[] = [];
  for (const key of [...HANDLE_KEYS, ...RAW_KEYS]) {
    if (await probe.lock(key)) await probe.unlock(key);
    else held.push({ key, holders: [] });
  }
  return held;
}

/**
 * Where the workers' clients connect: the servers, each behind a fault
 * proxy, and the fault done to the servers themselves.
 */
interface Servers {
  readonly proxies: readonly Proxy[];
  /** `host:port` of every proxy, in the order the clients try them. */
  readonly hosts: readonly string[];
  /** The port of a server that is up, for the final probe. */
  probePort(): number;
  /** When the servers' own faults are due (ms of `Date.now()`). */
  readonly serverFaultsAt: number[];
  /** Does the next server fault (the runtime's `faults` counter is kept by the caller). */
  serverFault(rng: Random): Promise<"restart" | "kill">;
  /** How long a session whose connection (or server) died may keep its locks, at most. */
  readonly releaseWithin: number;
  close(): Promise<void>;
}

/**
 * One bundled server in this process, restarted at a third and two thirds
 * of the run: it forgets every session, and comes back with a grace period
 * as long as the release timeout.
 */
async function memoryServer(dialect: Dialect, origin: () => number): Promise<Servers> {
  let server = await startServer({ port: 0, dialect });
  const proxy = await startProxy(server.port);
  return {
    proxies: [proxy],
    hosts: [`127.0.0.1:${proxy.port}`],
    probePort: () => server.port,
    get serverFaultsAt() {
      return [origin() + DURATION / 3, origin() + (2 * DURATION) / 3];
    },
    async serverFault() {
      const port = server.port;
      await server.close();
      // A grace period as long as the release timeout: no client that held a key on the
      // old server believes it still does (its lease counts from its last reply, before the
      // restart) by the time the new one grants it.
      server = await startServer({ port, dialect, graceMs: RELEASE_TIMEOUT });
      return "restart";
    },
    releaseWithin: RELEASE_TIMEOUT + 2000,
    async close() {
      await proxy.close();
      await server.close();
    },
  };
}

/**
 * Two bundled servers, each an `elock server --store etcd` process, on one
 * etcd: the clients know both (`hosts`). Three times in the run one of them
 * is killed with SIGKILL and started again on its port after a random
 * pause; its sessions live in etcd, so the clients resume them on the
 * other server (or on it, back up).
 */
async function etcdServers(dialect: Dialect, origin: () => number): Promise<Servers> {
  const etcd = await startEtcd();
  const start = async (port: number) => {
    const cli = new Cli([
      "server",
      ...["--port", String(port), "--dialect", dialect],
      ...["--store", "etcd", "--etcd-endpoints", etcd.endpoints.join(",")],
    ]);
    const [, listening] = await cli.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/);
    return { cli, port: Number(listening) };
  };
  const servers: { cli: Cli; port: number }[] = [];
  const proxies: Proxy[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const server = await start(0);
      servers.push(server);
      proxies.push(await startProxy(server.port));
    }
  } catch (error) {
    await Promise.all([...proxies.map((p) => p.close()), ...servers.map((s) => s.cli.dispose())]);
    await etcd.stop();
    throw error;
  }
  let down: number | null = null;
  let kills = 0;
  return {
    proxies,
    hosts: proxies.map((p) => `127.0.0.1:${p.port}`),
    probePort: () => servers[down === 0 ? 1 : 0]!.port,
    get serverFaultsAt() {
      return [1, 2, 3].map((i) => origin() + (i * DURATION) / 4);
    },
    async serverFault(rng) {
      const i = kills++ % 2;
      down = i;
      servers[i]!.cli.signal("SIGKILL");
      await servers[i]!.cli.exit();
      await sleep(rng.int(200, 1500));
      servers[i] = await start(servers[i]!.port);
      down = null;
      return "kill";
    },
    // A killed server's sessions go by their etcd leases: at most 1.5 release timeouts (2 s floor).
    releaseWithin: Math.max(2000, 1.5 * RELEASE_TIMEOUT) + 3000,
    async close() {
      await Promise.all(proxies.map((p) => p.close()));
      await Promise.all(servers.map((s) => s.cli.dispose()));
      await etcd.stop();
    },
  };
}

const RUNS: { dialect: Dialect; store: "memory" | "etcd" }[] = [
  ...DIALECTS.map((dialect) => ({ dialect, store: "memory" as const })),
  { dialect: "extended", store: "etcd" },
];

for (const [index, { dialect, store }] of RUNS.entries()) {
  const label = store === "memory" ? `[${dialect}]` : `[${dialect}, two servers on etcd]`;
  test(
    `${label} fault history: ${WORKERS} processes x ${TASKS} tasks, ` +
      `${DURATION / 1000} s of faults, no overlapping holds and no leaked lock`,
    { timeout: DURATION + DRAIN_LIMIT + 6 * PROCESS_WAIT },
    async () => {
      const seed = SEED + index * 1_000_003;
      const rng = random(seed);
      const where = `${label} (${SEED_TEXT})`;
      console.log(`${where} starting`);
      let origin = Date.now();
      const servers = store === "memory"
        ? await memoryServer(dialect, () => origin)
        : await etcdServers(dialect, () => origin);
      const workers: Worker[] = [];
      const unstallTimers = new Set<ReturnType<typeof setTimeout>>();
      let probe: ELockClient | null = null;
      const faults: Partial<Record<Fault | "restart" | "kill", number>> = {};
      const problems: string[] = [];
      const notes: string[] = [];
      let overlaps: Overlap[] = [];
      let leaked: ServerLock[] = [];
      try {
        for (let worker = 1; worker <= WORKERS; worker++) {
          workers.push(
            new Worker({
              worker,
              hosts: servers.hosts,
              seed: seed + worker,
              tasks: TASKS,
              handleKeys: HANDLE_KEYS,
              keyPerTask: KEY_PER_TASK,
              rawKeys: RAW_KEYS,
              releaseTimeout: RELEASE_TIMEOUT,
              heartbeat: HEARTBEAT,
              commandTimeout: COMMAND_TIMEOUT,
              drainLimit: DRAIN_LIMIT,
            }),
          );
        }
        await Promise.all(workers.map((w) => w.until(() => w.ready, "ready", PROCESS_WAIT)));

        origin = Date.now();
        const stopAt = origin + DURATION;
        for (const w of workers) w.send(`start ${stopAt}`);
        let delayed = false;
        const serverFaults = servers.serverFaultsAt;
        while (Date.now() < stopAt) {
          await sleep(rng.int(40, 250));
          if (serverFaults.length > 0 && Date.now() >= serverFaults[0]!) {
            serverFaults.shift();
            const kind = await servers.serverFault(rng);
            faults[kind] = (faults[kind] ?? 0) + 1;
            continue;
          }
          const withLinks = servers.proxies.filter((p) => p.openIndexes.length > 0);
          if (withLinks.length === 0) continue;
          const proxy = rng.pick(withLinks);
          const link = rng.pick(proxy.openIndexes);
          let roll = rng.int(1, FAULTS.reduce((sum, [, weight]) => sum + weight, 0));
          const fault = FAULTS.find(([, weight]) => (roll -= weight) <= 0)![0];
          faults[fault] = (faults[fault] ?? 0) + 1;
          if (fault === "stall") {
            proxy.stall(link);
            // Some stalls outlast the command timeout and the heartbeat, some do not.
            const timer = setTimeout(() => {
              unstallTimers.delete(timer);
              proxy.unstall(link);
            }, rng.int(50, 1500));
            unstallTimers.add(timer);
          } else if (fault === "delay") {
            delayed = !delayed;
            const ms = delayed ? rng.int(1, 40) : 0;
            for (const p of servers.proxies) p.delay({ toServer: ms, toClient: ms });
          } else proxy[fault](link);
        }
        // The faults stop (a half-dead link stays so until its client notices).
        for (const timer of unstallTimers) clearTimeout(timer);
        for (const p of servers.proxies) {
          p.unstall();
          p.delay({ toServer: 0, toClient: 0 });
        }

        await Promise.all(
          workers.map((w) => w.until(() => w.report !== null, "idle report", DRAIN_LIMIT + 30_000)),
        );

        const holds = workers.flatMap((w) => w.holds);
        problems.push(...malformedHolds(holds).map((p) => `harness: ${p}`));
        overlaps = findOverlaps(holds);

        // Sessions whose connection died meanwhile keep their locks for the release timeout.
        probe = await ELockClient.connect({ port: servers.probePort(), releaseTimeout: 0 });
        const deadline = Date.now() + servers.releaseWithin;
        for (;;) {
          leaked = unclaimedLocks(await serverLocks(dialect, probe), holds);
          if (leaked.length === 0 || Date.now() > deadline) break;
          await sleep(100);
        }

        for (const w of workers) {
          const report = w.report!;
          const released = report.counts["holds released"] ?? 0;
          if (released < MIN_HOLDS) {
            problems.push(`worker ${report.worker} released only ${released} holds`);
          }
          if (report.stuck > 0) {
            problems.push(
              `worker ${report.worker}: ${report.stuck} tasks still running ` +
                `${DRAIN_LIMIT} ms after the stop`,
            );
          }
          // Not a violation by itself: the client gives up by design when reconnecting keeps
          // failing past the release timeout (fresh connections get faults too); the progress
          // check above still fails a client that gave up early.
          if (report.closed) notes.push(`worker ${report.worker}: its client gave up and closed`);
          for (const error of report.unexpected) {
            problems.push(`worker ${report.worker}: unexpected error: ${error}`);
          }
        }
      } catch (error) {
        // The harness itself failed (a worker died, a report never came): still name the seed.
        throw new Error(`${where}: ${error instanceof Error ? error.message : error}`, {
          cause: error,
        });
      } finally {
        for (const timer of unstallTimers) clearTimeout(timer);
        const codes = await Promise.all(workers.map((w) => w.dispose(PROCESS_WAIT / 3)));
        codes.forEach((code, i) => {
          if (code !== 0) {
            problems.push(`worker ${i + 1} exited with ${code}; stderr:\n${workers[i]!.stderr}`);
          }
        });
        await probe?.close();
        await servers.close();
      }

      const injected = Object.values(faults).reduce((a, b) => a + b, 0);
      if (injected === 0) problems.push("no fault was injected");
      // The server names a session by its public name (the sessionName of its id).
      const sessionOf = new Map(
        workers.map((w) => [sessionName(w.report?.sessionId ?? ""), w.report?.worker]),
      );
      const across = overlaps.filter((o) => o.scope === "across clients");
      const same = overlaps.filter((o) => o.scope === "same client");
      const lines = [
        `${where}: ${workers.reduce((n, w) => n + w.holds.length, 0)} holds; ` +
        `faults ${JSON.stringify(faults)}`,
        ...workers.map((w) => `  worker ${w.report?.worker}: ${JSON.stringify(w.report?.counts)}`),
        ...notes.map((note) => `  note: ${note}`),
      ];
      console.log(lines.join("\n"));
      const violations: string[] = [];
      if (overlaps.length > 0) {
        violations.push(
          `${overlaps.length} overlapping holds (${across.length} across clients, ` +
            `${same.length} between tasks of one client), e.g.:`,
          ...[...across.slice(0, 8), ...same.slice(0, 4)].map((o) =>
            "  " + describeOverlap(o, origin)
          ),
        );
      }
      for (const lock of leaked) {
        const holders = lock.holders.map((id) => `#${id} (worker ${sessionOf.get(id) ?? "?"})`);
        violations.push(
          `leaked: the server still holds ${lock.key}` +
            (holders.length > 0 ? ` for ${holders.join(", ")}` : "") +
            `, after the faults stopped and every client went idle, and no live hold claims it`,
        );
      }
      violations.push(...problems);
      if (violations.length > 0) {
        const open = workers.flatMap((w) => w.holds).filter((h) => h.end === null);
        assert.fail(
          `${where} fault history violated:\n${violations.join("\n")}` +
            (open.length > 0
              ? `\nstill claimed: ${open.map((h) => describeHold(h, origin)).join("; ")}`
              : "") +
            `\n(repeat with ${SEED_TEXT})`,
        );
      }
    },
  );
}
