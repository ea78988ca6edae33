/**
 * One worker process of tests/fault_history_test.ts. It connects one shared
 * `ELockClient` (through the test's fault proxy) and runs many concurrent
 * tasks that take and release a few keys with `withLock`, `acquire`, a
 * re-lock after a short wait, and raw `lock`/`unlock`, with random timeouts
 * and aborts, and records every hold it believed it had (see
 * tests/support/history.ts).
 *
 * Its configuration is the JSON in `ELOCK_FAULT_WORKER`. It talks to the
 * test on its standard streams, one JSON object a line on stdout:
 *
 * - `{"type":"ready"}` once connected;
 * - on stdin `start STOP_AT`: run the tasks until `STOP_AT` (ms of
 *   `Date.now()`), let them finish, make sure the client is on a live
 *   connection with nothing in flight, then print one `{"type":"hold"}` line
 *   per hold and `{"type":"idle"}` with its counts and session id;
 * - on stdin `exit` (or when stdin ends): close the client and exit.
 *
 * Holds:
 *
 * - Handles (`withLock`, `acquire`): from the moment the call resolved (or
 *   the callback started) to the earlier of the release (the callback's
 *   return, or the `release()` call) and the moment the handle reported
 *   the lock lost (`lock.signal` aborts). One holder per task.
 * - Raw `lock`/`unlock` on their own keys: the server's locks are
 *   re-entrant per session, so a worker never has two raw holds of one key
 *   at once (a local mutex per raw key); a raw hold ends at the earlier of
 *   the `unlock()` call and any `sessionlost` event. One holder per worker.
 *
 * @module
 */

import process from "node:process";
import {
  ConnectionClosedError,
  DeadlockError,
  ELockClient,
  type ELockClientEvent,
  type HeldLock,
  LockUnavailableError,
  SessionLostError,
} from "../../mod.ts";
import type { Hold } from "./history.ts";
import { type Random, random } from "./random.ts";

/** What the test tells a worker (as JSON in `ELOCK_FAULT_WORKER`). */
export interface WorkerConfig {
  readonly worker: number;
  /** `host:port` of the servers (the fault proxies in front of them), tried in this order. */
  readonly hosts: readonly string[];
  readonly seed: number;
  readonly tasks: number;
  /** Keys taken through handles (`withLock`, `acquire`). */
  readonly handleKeys: readonly string[];
  /** Task `i` takes only `handleKeys[i]`: no two tasks of this client share a handle key. */
  readonly keyPerTask: boolean;
  /** Keys taken with raw `lock`/`unlock`. */
  readonly rawKeys: readonly string[];
  readonly releaseTimeout: number;
  readonly heartbeat: number;
  readonly commandTimeout: number;
  /** How long the tasks may take to finish after the stop, in ms. */
  readonly drainLimit: number;
}

/** What a worker reports when it is idle. */
export interface WorkerReport {
  readonly type: "idle";
  readonly worker: number;
  readonly sessionId: string | null;
  readonly closed: boolean;
  readonly counts: Record<string, number>;
  /** Errors no fault explains (their messages, a few). */
  readonly unexpected: string[];
  /** Tasks that had not finished `drainLimit` ms after the stop. */
  readonly stuck: number;
}

const config = JSON.parse(process.env.ELOCK_FAULT_WORKER ?? "null") as WorkerConfig | null;
if (config === null) throw new Error("ELOCK_FAULT_WORKER is not set");
const { worker } = config;
const counts: Record<string, number> = {};
const count = (what: string, n = 1) => void (counts[what] = (counts[what] ?? 0) + n);
const unexpected: string[] = [];
const holds: Array<{ -readonly [K in keyof Hold]: Hold[K] }> = [];
let holdSeq = 0;

const print = (message: unknown) => process.stdout.write(JSON.stringify(message) + "\n");
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves after `ms`, or as soon as one of `signals` aborts. */
function hold(ms: number, ...signals: AbortSignal[]): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      for (const signal of signals) signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const signal of signals) {
      if (signal.aborted) return done();
      signal.addEventListener("abort", done, { once: true });
    }
  });
}

function begin(key: string, holder: string, op: string): Hold & { end: number | null } {
  const record = {
    id: `w${worker}.${++holdSeq}`,
    key,
    holder,
    worker,
    op,
    start: Date.now(),
    end: null as number | null,
    cut: "open" as Hold["cut"],
  };
  holds.push(record);
  return record;
}

function finish(record: Hold, cut: "release" | "lost", note?: string): void {
  const mutable = record as { -readonly [K in keyof Hold]: Hold[K] };
  if (mutable.end !== null) return;
  mutable.end = Date.now();
  mutable.cut = cut;
  if (note !== undefined) mutable.note = note;
  count(cut === "lost" ? "holds lost" : "holds released");
}

const client = await ELockClient.connect({
  hosts: [...config.hosts],
  releaseTimeout: config.releaseTimeout,
  heartbeat: config.heartbeat,
  commandTimeout: config.commandTimeout,
  reconnect: { initialDelay: 10, maxDelay: 200 },
});
for (const type of ["disconnect", "reconnect", "resume", "sessionlost", "error"] as const) {
  client.addEventListener(type, () => count(`event ${type}`));
}
/** Raw holds open now: a session loss ends them. */
const rawOpen = new Set<Hold>();
client.addEventListener("sessionlost", (event) => {
  const keys = (event as ELockClientEvent).keys ?? [];
  // Only the session that held a raw key lists it (another session of the pool may be lost
  // meanwhile): cutting other raw holds short could hide an overlap.
  for (const record of [...rawOpen]) {
    if (!keys.includes(record.key)) continue;
    finish(record, "lost", "sessionlost");
    rawOpen.delete(record);
  }
});

/** Sorts an error a lock call rejected with; `userAbort` is the task's own abort reason. */
function failed(op: string, error: unknown, userAbort: unknown): void {
  if (error === userAbort && userAbort !== undefined) count(`${op}: aborted`);
  else if (error instanceof LockUnavailableError) count(`${op}: unavailable`);
  else if (error instanceof ConnectionClosedError) count(`${op}: connection closed`);
  else if (error instanceof DeadlockError) count(`${op}: deadlock`);
  // Granted, but on a session lost since the request was sent: not believed, and released.
  else if (error instanceof SessionLostError) count(`${op}: session lost`);
  else {
    count(`${op}: unexpected`);
    if (unexpected.length < 5) unexpected.push(`${op}: ${String(error)}`);
  }
}

/** A random lock timeout: none, short, or long enough to wait through faults. */
function timeoutOf(rng: Random): number {
  const roll = rng.next();
  return roll < 0.2 ? 0 : roll < 0.6 ? rng.int(20, 400) : rng.int(700, 3000);
}

/**
 * A random hold time: mostly short, some across several faults, a few
 * longer than the release timeout (so a session that expired on the server
 * while its client still believed it held a key shows as an overlap).
 */
function holdTimeOf(rng: Random): number {
  const roll = rng.next();
  if (roll < 0.7) return rng.int(0, 40);
  if (roll < 0.93) return rng.int(50, 300);
  if (roll < 0.98) return rng.int(400, 900);
  return rng.int(config!.releaseTimeout, 2 * config!.releaseTimeout);
}

/** Sometimes an AbortController that aborts at a random moment. */
function maybeAbort(rng: Random): { signal?: AbortSignal; reason?: Error; cancel(): void } {
  if (rng.next() >= 0.25) return { cancel() {} };
  const controller = new AbortController();
  const reason = new Error("the task gave up");
  const timer = setTimeout(() => controller.abort(reason), rng.int(0, 800));
  return { signal: controller.signal, reason, cancel: () => clearTimeout(timer) };
}

/** Holds a handle for a while, its hold ending early when it is lost (or the task aborts). */
async function useHandle(
  lock: HeldLock,
  record: Hold,
  ms: number,
  abort: AbortSignal | undefined,
): Promise<void> {
  const onLost = () => finish(record, "lost", "handle signal");
  lock.signal.addEventListener("abort", onLost, { once: true });
  if (lock.lost) finish(record, "lost", "lost when granted");
  await hold(ms, lock.signal, ...(abort === undefined ? [] : [abort]));
  finish(record, "release");
  lock.signal.removeEventListener("abort", onLost);
}

async function release(lock: HeldLock): Promise<void> {
  try {
    if (!await lock.release()) count("release: false");
  } catch (error) {
    failed("release", error, undefined);
  }
}

async function withLockOp(rng: Random, holder: string, key: string): Promise<void> {
  const abort = maybeAbort(rng);
  const ms = holdTimeOf(rng);
  try {
    await client.withLock(key, async (lock) => {
      const record = begin(key, holder, "withLock");
      await useHandle(lock, record, ms, abort.signal);
    }, { timeout: timeoutOf(rng), ...(abort.signal ? { signal: abort.signal } : {}) });
  } catch (error) {
    failed("withLock", error, abort.reason);
  } finally {
    abort.cancel();
  }
}

async function acquireOp(rng: Random, holder: string, key: string, op = "acquire") {
  const abort = maybeAbort(rng);
  const ms = holdTimeOf(rng);
  let lock: HeldLock;
  try {
    lock = await client.acquire(key, {
      timeout: timeoutOf(rng),
      ...(abort.signal ? { signal: abort.signal } : {}),
    });
  } catch (error) {
    failed(op, error, abort.reason);
    abort.cancel();
    return false;
  }
  const record = begin(key, holder, op);
  await useHandle(lock, record, ms, abort.signal);
  abort.cancel();
  await release(lock);
  return true;
}

/** A lock given up on quickly (a short timeout, often an abort), then asked for again at once. */
async function relockOp(rng: Random, holder: string, key: string): Promise<void> {
  const controller = new AbortController();
  const reason = new Error("the task gave up");
  const timer = rng.next() < 0.6
    ? setTimeout(() => controller.abort(reason), rng.int(0, 60))
    : undefined;
  let lock: HeldLock | null = null;
  try {
    lock = await client.acquire(key, { timeout: rng.int(1, 120), signal: controller.signal });
  } catch (error) {
    failed("relock (first)", error, reason);
  } finally {
    clearTimeout(timer);
  }
  if (lock !== null) {
    const record = begin(key, holder, "relock (first)");
    await useHandle(lock, record, holdTimeOf(rng), undefined);
    await release(lock);
    return;
  }
  await acquireOp(rng, holder, key, "relock");
}

/** Local mutexes of the raw keys: one raw hold per key and worker at a time. */
const rawBusy = new Set<string>();

async function rawOp(rng: Random, key: string): Promise<void> {
  rawBusy.add(key);
  const abort = maybeAbort(rng);
  try {
    let granted: boolean;
    try {
      granted = await client.lock(key, {
        timeout: timeoutOf(rng),
        ...(abort.signal ? { signal: abort.signal } : {}),
      });
    } catch (error) {
      failed("lock", error, abort.reason);
      return;
    }
    if (!granted) {
      count("lock: not granted");
      return;
    }
    const record = begin(key, `w${worker}/raw`, "lock");
    rawOpen.add(record);
    await hold(holdTimeOf(rng), ...(abort.signal ? [abort.signal] : []));
    finish(record, "release");
    rawOpen.delete(record);
    try {
      if (!await client.unlock(key)) count("unlock: false");
    } catch (error) {
      failed("unlock", error, undefined);
    }
  } finally {
    abort.cancel();
    rawBusy.delete(key);
  }
}

async function task(index: number, stopAt: number): Promise<void> {
  const rng = random(config!.seed * 100 + index);
  const holder = `w${worker}/t${index}`;
  const { handleKeys, keyPerTask } = config!;
  const handleKey = () =>
    keyPerTask ? handleKeys[index % handleKeys.length]! : rng.pick(handleKeys);
  while (Date.now() < stopAt && !client.closed) {
    const roll = rng.next();
    const rawKey = rng.pick(config!.rawKeys);
    if (roll < 0.2 && !rawBusy.has(rawKey)) await rawOp(rng, rawKey);
    else if (roll < 0.5) await withLockOp(rng, holder, handleKey());
    else if (roll < 0.85) await acquireOp(rng, holder, handleKey());
    else await relockOp(rng, holder, handleKey());
    count("ops");
    await sleep(rng.int(0, 20));
  }
}

/** Makes sure the client is on a live connection and every earlier request is answered. */
async function settle(): Promise<void> {
  for (let attempt = 0; attempt < 10 && !client.closed; attempt++) {
    try {
      await client.stats();
      await sleep(200);
      await client.stats();
      return;
    } catch (error) {
      if (!(error instanceof ConnectionClosedError)) throw error;
    }
  }
}

async function run(stopAt: number): Promise<void> {
  let stuck = config!.tasks;
  const tasks = Array.from(
    { length: config!.tasks },
    (_, i) => task(i, stopAt).finally(() => stuck--),
  );
  let drainTimer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(tasks),
    new Promise((resolve) => {
      drainTimer = setTimeout(resolve, Math.max(0, stopAt - Date.now()) + config!.drainLimit);
    }),
  ]);
  clearTimeout(drainTimer);
  await settle();
  for (const record of holds) print({ type: "hold", ...record });
  const report: WorkerReport = {
    type: "idle",
    worker,
    sessionId: client.closed ? null : await client.sessionId().catch(() => null),
    closed: client.closed,
    counts,
    unexpected,
    stuck,
  };
  print(report);
}

let exiting = false;
async function exit(code: number): Promise<void> {
  if (exiting) return;
  exiting = true;
  await client.close().catch(() => {});
  process.exit(code);
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (text: string) => {
  input += text;
  let end: number;
  while ((end = input.indexOf("\n")) >= 0) {
    const [command, argument] = input.slice(0, end).trim().split(" ");
    input = input.slice(end + 1);
    if (command === "start") {
      // Never outlive the test for long, whatever happens to it.
      setTimeout(() => void exit(3), Number(argument) - Date.now() + config!.drainLimit + 300_000);
      run(Number(argument)).catch((error) => {
        process.stderr.write(`worker ${worker} failed: ${error?.stack ?? error}\n`);
        void exit(2);
      });
    } else if (command === "exit") void exit(0);
  }
});
process.stdin.on("end", () => void exit(exiting ? 0 : 1));
print({ type: "ready", worker });
