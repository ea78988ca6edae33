/**
 * {@linkcode ELockLockManager}: eLock locks shaped like the Web Locks API's
 * `LockManager` (`navigator.locks`).
 *
 * @module
 */

import { LockUnavailableError, UnsupportedCommandError } from "../errors.ts";
import { encodeKey, type KeyEncoding } from "../protocol/commands.ts";
import type { DebugInfo } from "../protocol/reply_reader.ts";
import type { HeldLock } from "./held_lock.ts";
import type { AcquireOptions } from "./options.ts";
import { checkOptions, checkSignal, checkType, describe } from "./checks.ts";

/** The names of {@linkcode ELockLockOptions}. */
const REQUEST_OPTIONS: readonly string[] = Object.keys(
  { mode: true, ifAvailable: true, signal: true } satisfies {
    [K in keyof ELockLockOptions]-?: true;
  },
);

/**
 * What {@linkcode ELockLockManager} needs of its client: `ELockClient` is one.
 *
 * @example
 * ```ts ignore
 * const host: LockManagerHost = client;
 * ```
 */
export interface LockManagerHost {
  /** How keys go on the wire. */
  readonly keyEncoding: KeyEncoding;
  /** Takes a lock (see `ELockClient.acquire`). */
  acquire(key: string, options?: AcquireOptions): Promise<HeldLock>;
  /** The server's sessions, locks and waiters (see `ELockClient.debug`). */
  debug(): Promise<DebugInfo>;
}

/**
 * Web Locks lock mode.
 *
 * @example
 * ```ts
 * const mode: ELockLockMode = "shared";
 * ```
 */
export type ELockLockMode = "exclusive" | "shared";

/**
 * Options of {@linkcode ELockLockManager.request}, as in Web Locks.
 *
 * @example
 * ```ts
 * const options: ELockLockOptions = { mode: "shared", ifAvailable: true };
 * ```
 */
export interface ELockLockOptions {
  /** `"exclusive"` (default) or `"shared"` (extended servers only). */
  mode?: ELockLockMode;
  /** Do not wait: call the callback with `null` when the lock is taken. */
  ifAvailable?: boolean;
  /** Cancels the wait: the request rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * The lock given to a {@linkcode ELockLockManager.request} callback.
 *
 * @example
 * ```ts
 * const lock: ELockLock = { name: "ledger", mode: "shared" };
 * ```
 */
export interface ELockLock {
  /** The name requested. */
  readonly name: string;
  /** The mode requested. */
  readonly mode: ELockLockMode;
}

/**
 * One lock or waiting request in {@linkcode ELockLockManager.query}'s result.
 *
 * @example
 * ```ts
 * const info: ELockLockInfo = { name: "ledger", mode: "exclusive", clientId: "7" };
 * ```
 */
export interface ELockLockInfo {
  /** The name, as it is on the wire (its SHA-1 with `keyEncoding: "sha1"`). */
  name: string;
  /** The mode; not known for waiting requests. */
  mode?: ELockLockMode;
  /**
   * The holder or waiter as the server names it: its session id on the
   * reference servers, its public name on the bundled one (see `isSessionName()`).
   */
  clientId: string;
}

/**
 * What {@linkcode ELockLockManager.query} returns, as in Web Locks.
 *
 * @example
 * ```ts
 * const snapshot: ELockLockManagerSnapshot = {
 *   held: [{ name: "ledger", mode: "exclusive", clientId: "7" }],
 *   pending: [{ name: "ledger", clientId: "8" }],
 * };
 * ```
 */
export interface ELockLockManagerSnapshot {
  /** Locks held, one entry per holding session. */
  held: ELockLockInfo[];
  /** Requests waiting. */
  pending: ELockLockInfo[];
}

/** The value a shared lock carries on an extended server. */
export const SHARED_VALUE = "shared";

/**
 * Web Locks on an eLock server, as `client.locks`.
 *
 * On an extended server every lock is a value lock, so exclusive and shared
 * requests queue against each other: shared holders carry the value
 * `shared`, each exclusive holder a value of its own. On an original server
 * exclusive requests use `lock`, and `mode: "shared"` throws
 * {@linkcode UnsupportedCommandError}. Names are keys: use names here that
 * are not also locked with `client.lock()`.
 *
 * Requests of one client for the same name queue in the client, first
 * come, first served (shared ones share), exactly as requests of different
 * clients queue on the server; each granted request holds a session of the
 * client's pool while it runs. Without `ifAvailable` a request waits until
 * granted or aborted.
 *
 * Waiting: `lock()`, `lockValue()`, `acquire()` and `withLock()` do not wait
 * unless given a `timeout` (in ms; `Infinity` waits until granted), while
 * `locks.request()` and `elock lock` wait until granted unless given
 * `ifAvailable` or `--timeout`.
 *
 * @example
 * ```ts ignore
 * const report = await client.locks.request("ledger", async (lock) => {
 *   return await buildReport(lock!.name);
 * });
 * ```
 */
export class ELockLockManager {
  readonly #client: LockManagerHost;
  #original = false;
  #counter = 0;
  readonly #tag = Math.random().toString(36).slice(2, 10);

  /**
   * Made by `client.locks`; not meant to be built by hand.
   *
   * @param client the client whose session holds the locks
   */
  constructor(client: LockManagerHost) {
    this.#client = client;
  }

  /**
   * Requests a lock, runs `callback` while it is held, releases it when the
   * callback settles.
   *
   * Waiting: `lock()`, `lockValue()`, `acquire()` and `withLock()` do not wait
   * unless given a `timeout` (in ms; `Infinity` waits until granted), while
   * `locks.request()` and `elock lock` wait until granted unless given
   * `ifAvailable` or `--timeout`.
   *
   * @param name the lock's name (a key)
   * @param options `mode`, `ifAvailable`, `signal`
   * @param callback gets the lock, or `null` with `ifAvailable` when it is taken
   * @returns what the callback returns
   * @throws {UnsupportedCommandError} `mode: "shared"` on an original server
   * @throws {TypeError} no callback, an unknown option (or `steal`), or an option of the
   *   wrong type
   * @throws {DeadlockError} the wait would close a cycle of waiters
   * @throws {InvalidKeyError} with raw keys: the name is not one protocol word
   * @throws the signal's reason when aborted; what the callback throws
   *
   * @example
   * ```ts ignore
   * await client.locks.request("config", { mode: "shared" }, async () => readConfig());
   * ```
   */
  request<T>(name: string, callback: (lock: ELockLock | null) => T | Promise<T>): Promise<T>;
  /**
   * Requests a lock with options.
   *
   * Waiting: `lock()`, `lockValue()`, `acquire()` and `withLock()` do not wait
   * unless given a `timeout` (in ms; `Infinity` waits until granted), while
   * `locks.request()` and `elock lock` wait until granted unless given
   * `ifAvailable` or `--timeout`.
   *
   * @param name the lock's name (a key)
   * @param options `mode`, `ifAvailable`, `signal`
   * @param callback gets the lock, or `null` with `ifAvailable` when it is taken
   * @returns what the callback returns
   *
   * @example
   * ```ts ignore
   * await client.locks.request("job", { ifAvailable: true }, (lock) => lock && runJob());
   * ```
   */
  request<T>(
    name: string,
    options: ELockLockOptions,
    callback: (lock: ELockLock | null) => T | Promise<T>,
  ): Promise<T>;
  request<T>(
    name: string,
    optionsOrCallback: ELockLockOptions | ((lock: ELockLock | null) => T | Promise<T>),
    maybeCallback?: (lock: ELockLock | null) => T | Promise<T>,
  ): Promise<T> {
    const callback = typeof optionsOrCallback === "function" ? optionsOrCallback : maybeCallback;
    const options = typeof optionsOrCallback === "function" ? {} : optionsOrCallback ?? {};
    if (typeof callback !== "function") {
      return Promise.reject(new TypeError("locks.request() needs a callback"));
    }
    if (
      typeof options === "object" && options !== null && "steal" in options
    ) {
      return Promise.reject(new TypeError("locks.request(): steal is not supported by eLock"));
    }
    try {
      checkOptions("locks.request()", options, REQUEST_OPTIONS);
      checkType("locks.request()", "ifAvailable", options.ifAvailable, "boolean", "a boolean");
      checkSignal("locks.request()", options.signal);
    } catch (error) {
      return Promise.reject(error);
    }
    const mode = options.mode ?? "exclusive";
    if (mode !== "exclusive" && mode !== "shared") {
      return Promise.reject(
        new TypeError(
          `locks.request(): mode must be "exclusive" or "shared", got ${describe(mode)}`,
        ),
      );
    }
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    return this.#run(name, mode, options, callback);
  }

  /**
   * Lists the locks held and the requests waiting on the server (from `debug`).
   *
   * @returns `{ held, pending }`
   * @throws {UnsupportedCommandError} the server is an original eLock server
   *
   * @example
   * ```ts ignore
   * const { held, pending } = await client.locks.query();
   * ```
   */
  async query(): Promise<ELockLockManagerSnapshot> {
    const info = await this.#client.debug();
    const shared = await this.#sharedWire();
    const held: ELockLockInfo[] = [];
    for (const lock of info.locks) {
      const mode: ELockLockMode = lock.value === shared ? "shared" : "exclusive";
      for (const clientId of lock.holders) held.push({ name: lock.key, mode, clientId });
    }
    const pending = info.requests.map((r) => ({ name: r.key, clientId: r.session }));
    return { held, pending };
  }

  async #run<T>(
    name: string,
    mode: ELockLockMode,
    options: ELockLockOptions,
    callback: (lock: ELockLock | null) => T | Promise<T>,
  ): Promise<T> {
    if (options.signal?.aborted) throw options.signal.reason;
    const acquireOptions: AcquireOptions = {
      timeout: options.ifAvailable ? 0 : Infinity,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    };
    let held: HeldLock;
    try {
      if (mode === "shared") {
        held = await this.#client.acquire(name, { ...acquireOptions, value: SHARED_VALUE });
      } else if (this.#original) {
        held = await this.#client.acquire(name, acquireOptions);
      } else {
        const own = `x.${this.#tag}.${++this.#counter}`;
        try {
          held = await this.#client.acquire(name, { ...acquireOptions, value: own });
        } catch (error) {
          if (!(error instanceof UnsupportedCommandError)) throw error;
          this.#original = true;
          held = await this.#client.acquire(name, acquireOptions);
        }
      }
    } catch (error) {
      if (error instanceof LockUnavailableError) return await callback(null);
      throw error;
    }
    let result: T;
    try {
      result = await callback({ name, mode });
    } catch (error) {
      await held.release().catch(() => {});
      throw error;
    }
    await held.release();
    return result;
  }

  #sharedWire(): Promise<string> {
    return encodeKey(SHARED_VALUE, this.#client.keyEncoding, "value");
  }
}
