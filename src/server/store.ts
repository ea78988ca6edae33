/**
 * The store seam of the bundled server: what a connection handler needs from
 * the lock table, whichever engine keeps it. The in-memory
 * {@linkcode LockTable} implements it synchronously (every answer is a plain
 * value, so the memory path stays as fast as before); the etcd store
 * (`./etcd/store.ts`) answers with promises.
 *
 * A caller treats every answer as `T | Promise<T>` and awaits only what is a
 * promise. An operation the store could not carry out (etcd unreachable, no
 * quorum) rejects with {@linkcode StoreUnavailableError}: nothing was granted,
 * and the connection answers {@linkcode storeUnavailableReply} and stays usable.
 *
 * @module
 */

import type { LockResult, ResumeResult, UnlockResult } from "./lock_table.ts";
import type { Dialect } from "./dialect.ts";

/**
 * A value now, or later.
 *
 * @example
 * ```ts
 * const n: MaybePromise<number> = Math.random() < 0.5 ? 1 : Promise.resolve(1);
 * console.log(n instanceof Promise ? await n : n);
 * ```
 */
export type MaybePromise<T> = T | Promise<T>;

/**
 * What a connection knows of its session, on any store.
 *
 * @example
 * ```ts
 * const show = (s: StoreSession) => `#${s.id} holds ${s.held.size} keys`;
 * ```
 */
export interface StoreSession {
  /** Public name, what replies and logs print (`#ID`). */
  readonly id: string;
  /** Secret id, answered to `conn_id`; `conn_id SECRET` resumes. */
  readonly secret: string;
  /** Milliseconds the session's locks survive a disconnect. */
  releaseTimeout: number;
  /** Keys this session holds, each with its fencing token. */
  readonly held: ReadonlyMap<string, number>;
  /** The wait this session is in (a lock that waits), or null. */
  readonly waiting: unknown;
  /** The store lost the session (its lease expired): its locks are gone. */
  readonly lost?: boolean;
  /** Set by the connection: called when the store loses the session while it is connected. */
  onLost?: (() => void) | undefined;
  /** `host:port` of the connection the session was created or last resumed on, when known. */
  peer?: string | undefined;
  /** The name the client gave with the `name` command (this server's extension), if any. */
  name?: string | undefined;
}

/**
 * What a `force_unlock KEY` (this server's extension, `--admin` only) freed:
 * the public names of the sessions that held the key (none when it was not
 * locked). The key then goes to its next waiter.
 *
 * @example
 * ```ts
 * const line = (f: ForceUnlockResult) => f.holders.map((h) => `#${h}`).join(", ");
 * ```
 */
export interface ForceUnlockResult {
  /** Public names of the sessions that held the key. */
  readonly holders: readonly string[];
}

/**
 * `stats` of the whole table.
 *
 * @example
 * ```ts
 * const line = (s: StoreStats) => `STAT clients ${s.clients}`;
 * ```
 */
export interface StoreStats {
  /** Sessions (connected or within their release timeout). */
  readonly clients: number;
  /** Locked keys. */
  readonly locks: number;
}

/**
 * `debug` of the whole table.
 *
 * @example
 * ```ts
 * const count = (d: StoreDebug) => d.locks.length;
 * ```
 */
export interface StoreDebug {
  readonly sessions: readonly {
    readonly id: string;
    readonly releaseTimeout: number;
    /** ms left before a disconnected session goes; null while connected. */
    readonly expiresIn: number | null;
    /** `host:port` the session connects from, when known. */
    readonly peer?: string | null | undefined;
    /** The name its client gave (`name` command), if any. */
    readonly name?: string | null | undefined;
  }[];
  readonly locks: readonly {
    readonly key: string;
    readonly holders: readonly string[];
    readonly value: string | null;
  }[];
  readonly requests: readonly { readonly session: string; readonly key: string }[];
}

/**
 * The lock table as a connection uses it. `S` is the store's own session type.
 *
 * @example
 * ```ts
 * import { LockTable } from "./lock_table.ts";
 *
 * const store: LockStore = new LockTable();
 * const s = await store.createSession();
 * console.log(await store.lock(s, "k", null, 0)); // { kind: "acquired" }
 * ```
 */
export interface LockStore<S extends StoreSession = StoreSession> {
  /** Starts a new connected session; `peer` is the `host:port` of its connection. */
  createSession(peer?: string): MaybePromise<S>;
  /** Requests `key` (exclusive when `value` is null), waiting up to `waitMs` ms. */
  lock(session: S, key: string, value: string | null, waitMs: number): MaybePromise<LockResult>;
  /** Releases `key` held by `session`. */
  unlock(session: S, key: string): MaybePromise<UnlockResult>;
  /** The fencing token of `key` held by `session`, or null. */
  fence(session: S, key: string): MaybePromise<number | null>;
  /** Releases every key `session` holds. */
  unlockAll(session: S): MaybePromise<void>;
  /** Withdraws the wait `session` is in, if any (its pending lock answers "unavailable"). */
  cancelWait(session: S): void;
  /** Detaches `session` from its connection; its locks go after its release timeout. */
  disconnect(session: S): MaybePromise<void>;
  /** Moves the connection of `current` to the disconnected session whose secret is `secret`. */
  resume(current: S, secret: string): MaybePromise<{ result: ResumeResult; session: S }>;
  /** Sets the release timeout of `session`, in ms. */
  setReleaseTimeout(session: S, ms: number): MaybePromise<void>;
  /** Sets the client name of `session` (the `name` command), kept with the session. */
  setName(session: S, name: string): MaybePromise<void>;
  /**
   * Frees `key` whoever holds it (`force_unlock`, an operator's command): its
   * holders lose it and its next waiter gets it.
   */
  forceUnlock(key: string): MaybePromise<ForceUnlockResult>;
  /** Counters of the whole table. */
  stats(): MaybePromise<StoreStats>;
  /** The whole table, for `debug`. */
  debug(): MaybePromise<StoreDebug>;
  /** The public name of the session whose secret is `secret`. */
  publicName(secret: string): string;
  /** Ends the store: answers every wait, stops every timer. */
  close(): MaybePromise<void>;
}

/**
 * The store could not carry out an operation (etcd unreachable, no quorum,
 * timeout). Nothing was granted.
 *
 * @example
 * ```ts
 * try {
 *   throw new StoreUnavailableError("etcd: no quorum");
 * } catch (e) {
 *   if (e instanceof StoreUnavailableError) console.log(e.message);
 * }
 * ```
 */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}

/**
 * The reply line (without its end) to a command the store could not carry
 * out: a server-side refusal, worded like the dialect's other ones (`400` in
 * the original dialect, `500` in the extended one, as for operator limits).
 *
 * @param dialect the dialect of the connection
 * @returns `400 Lock store unavailable` or `500 Lock store unavailable`
 *
 * @example
 * ```ts
 * console.log(storeUnavailableReply("extended")); // "500 Lock store unavailable"
 * ```
 */
export function storeUnavailableReply(dialect: Dialect): string {
  return `${dialect === "original" ? 400 : 500} Lock store unavailable`;
}
