/**
 * Helpers for the hostile-input tests: the expected reply texts of each
 * dialect, a set of test connections that are always closed, a "guard"
 * session whose locks must survive whatever other clients do, and polling.
 *
 * Runtime-neutral (node:net through {@linkcode LineClient}, node:assert).
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Dialect } from "../../src/server/mod.ts";
import { LineClient } from "./line_client.ts";
import { sleep } from "./wait.ts";
import { sessionName } from "../../mod.ts";

/** Both dialects, in the order the tests are declared. */
export const DIALECTS: readonly Dialect[] = ["original", "extended"];

/** The reply lines of one dialect as {@linkcode LineClient.line} returns them. */
export interface Replies {
  readonly dialect: Dialect;
  /** `text` as read by a LineClient (the original dialect keeps its `\r`). */
  line(text: string): string;
  readonly acquired: string;
  unavailable(holderId: string): string;
  readonly unlocked: string;
  readonly notLocked: string;
  notYours(holderId: string): string;
  readonly unlockAll: string;
  readonly setTimeout: string;
  readonly quit: string;
  /** Unknown command or wrong arity; `word` is the first word of the line. */
  unknown(word: string): string;
  /** Any error reply of this dialect (400 original, 500 extended). */
  readonly error: RegExp;
  readonly lineTooLong: string;
  /** A `conn_id` reply; group 1 is the id. */
  readonly idReply: RegExp;
}

/** The expected replies of `dialect`. */
export function repliesOf(dialect: Dialect): Replies {
  if (dialect === "original") {
    const line = (text: string) => `${text}\r`;
    return {
      dialect,
      line,
      acquired: line("200 Acquired"),
      unavailable: () => line("409 Unavailable"),
      unlocked: line("200 Unlocked"),
      notLocked: line("403 not_locked"),
      notYours: () => line("403 not_yours"),
      unlockAll: line("200 OK"),
      setTimeout: line("200 timeout set"),
      quit: line("200 Hey, it was nice seeing you."),
      unknown: (word) => line(`400 Unknown command: "${word}"`),
      error: /^400 [^\n]*\r$/,
      lineTooLong: line("400 Line too long"),
      idReply: /^200 (\S+)\r$/,
    };
  }
  const line = (text: string) => text;
  return {
    dialect,
    line,
    acquired: "200 Lock acquired",
    // The server prints a session's public name, not the id conn_id answered.
    unavailable: (id) => `409 Already locked by #${sessionName(id)}`,
    unlocked: "200 Lock released",
    notLocked: "200 Lock released",
    notYours: (id) => `403 Locked by #${sessionName(id)}`,
    unlockAll: "200 OK",
    setTimeout: "200 OK",
    quit: "200 OK",
    unknown: () => "500 Internal server error",
    error: /^500 Internal server error$/,
    lineTooLong: "500 Line too long",
    idReply: /^200 (\S+)$/,
  };
}

/** Every connection a test opens; all of them are closed on dispose. */
export class Clients implements AsyncDisposable {
  readonly #port: number;
  readonly #open = new Set<LineClient>();

  constructor(port: number) {
    this.#port = port;
  }

  /** Opens a new tracked connection. */
  async connect(): Promise<LineClient> {
    const client = await LineClient.connect(this.#port);
    this.#open.add(client);
    return client;
  }

  /** Connections opened and not yet closed or reset by the test. */
  get size(): number {
    return this.#open.size;
  }

  /** Closes `client` gracefully and stops tracking it. */
  async close(client: LineClient): Promise<void> {
    this.#open.delete(client);
    await client.close();
  }

  /** Resets `client` (RST where the runtime can) and stops tracking it. */
  reset(client: LineClient): void {
    this.#open.delete(client);
    client.reset();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const all = [...this.#open];
    this.#open.clear();
    await Promise.all(all.map((c) => c.close()));
  }
}

/** The counters of a `stats` reply. */
export interface Stats {
  readonly clients: number;
  readonly locks: number;
  readonly monitoring: number;
}

/** Sends `stats` on `client` and checks and parses the five reply lines. */
export async function stats(client: LineClient, r: Replies): Promise<Stats> {
  client.send("stats");
  return await readStats(client, r);
}

/** Reads, checks and parses the five lines of a `stats` reply. */
export async function readStats(client: LineClient, r: Replies): Promise<Stats> {
  assert.equal(await client.line(), r.line("200 STATS"));
  const counter = async (name: string) => {
    const line = await client.line();
    const match = new RegExp(`^STAT ${name} (\\d+)${r.line("")}$`).exec(line);
    assert.ok(match, `expected a STAT ${name} line, got ${JSON.stringify(line)}`);
    return Number(match[1]);
  };
  const clients = await counter("clients");
  const locks = await counter("locks");
  const monitoring = await counter("monitoring");
  assert.equal(await client.line(), r.line("END"));
  return { clients, locks, monitoring };
}

/** Sends `conn_id` and returns the session id, checking the reply's form. */
export async function sessionId(client: LineClient, r: Replies): Promise<string> {
  const reply = await client.request("conn_id");
  const match = r.idReply.exec(reply);
  assert.ok(match, `expected a conn_id reply, got ${JSON.stringify(reply)}`);
  return match[1]!;
}

/**
 * Calls `probe` until `done` accepts its result, at most `timeoutMs`
 * (generous: this is about asynchronous state, never about speed).
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) {
      throw new Error(`${what}: still ${JSON.stringify(value)} after ${timeoutMs} ms`);
    }
    await sleep(25);
  }
}

/**
 * A well-behaved session that holds locks throughout a test; `verify()`
 * checks that it still holds them and that a fresh connection is served.
 */
export class Guard {
  readonly keeper: LineClient;
  readonly id: string;
  readonly keys: readonly string[];
  readonly #clients: Clients;
  readonly #r: Replies;

  private constructor(
    clients: Clients,
    r: Replies,
    keeper: LineClient,
    id: string,
    keys: readonly string[],
  ) {
    this.#clients = clients;
    this.#r = r;
    this.keeper = keeper;
    this.id = id;
    this.keys = keys;
  }

  /** Connects a keeper and takes `keys`. */
  static async start(
    clients: Clients,
    r: Replies,
    keys: readonly string[] = ["guard-a", "guard-b"],
  ): Promise<Guard> {
    const keeper = await clients.connect();
    const id = await sessionId(keeper, r);
    for (const key of keys) assert.equal(await keeper.request(`lock ${key}`), r.acquired);
    return new Guard(clients, r, keeper, id, keys);
  }

  /**
   * Asserts that the server answers a fresh connection, that the keeper's
   * connection and session are intact, and that another client finds each
   * guarded key held by the keeper.
   */
  async verify(): Promise<void> {
    const r = this.#r;
    const probe = await this.#clients.connect();
    try {
      await sessionId(probe, r);
      for (const key of this.keys) {
        assert.equal(await probe.request(`lock ${key}`), r.unavailable(this.id), `lock ${key}`);
        assert.equal(await probe.request(`unlock ${key}`), r.notYours(this.id), `unlock ${key}`);
      }
      assert.equal(this.keeper.ended, false, "the keeper's connection was closed");
      assert.equal(await sessionId(this.keeper, r), this.id);
      for (const key of this.keys) {
        // Re-entrant: still ours, so this answers 200 without changing anything.
        assert.equal(await this.keeper.request(`lock ${key}`), r.acquired);
      }
      const counters = await stats(this.keeper, r);
      assert.ok(counters.locks >= this.keys.length, `STAT locks ${counters.locks}`);
    } finally {
      await this.#clients.close(probe);
    }
  }
}
