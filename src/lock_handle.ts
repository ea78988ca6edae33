/**
 * The handle of a held lock, as {@linkcode ELockClient.acquire} returns it.
 *
 * @module
 */

import type { SessionLostError } from "./errors.ts";

const lostControllers = new WeakMap<HeldLock, AbortController>();

/**
 * A lock held by a client's session. Release it with {@linkcode HeldLock.release}
 * or let `await using` do it.
 *
 * When the connection drops and the session cannot be resumed, the lock is
 * lost: {@linkcode HeldLock.lost} becomes `true` and
 * {@linkcode HeldLock.signal} aborts with a {@linkcode SessionLostError}.
 * Check the signal before each side effect that needs the lock, or pass it
 * to the calls that make them.
 *
 * @example
 * ```ts ignore
 * {
 *   await using lock = await client.acquire("invoice-42", { timeout: 5000 });
 *   console.log(`holding ${lock.key}`);
 * } // released here
 * ```
 */
export class HeldLock {
  /** The key, as the caller gave it. */
  readonly key: string;
  /** The value of a value lock; `null` for an exclusive lock. */
  readonly value: string | null;
  readonly #unlock: () => Promise<boolean>;
  readonly #lost: AbortController;
  #released: Promise<boolean> | null = null;

  /**
   * Made by {@linkcode ELockClient.acquire}; not meant to be built by hand.
   *
   * @param key the key
   * @param value the value of a value lock, or `null`
   * @param unlock releases the lock; resolves to whether the server released it
   */
  constructor(key: string, value: string | null, unlock: () => Promise<boolean>) {
    this.key = key;
    this.value = value;
    this.#unlock = unlock;
    this.#lost = new AbortController();
    lostControllers.set(this, this.#lost);
  }

  /**
   * Whether the lock was lost with its session (see {@linkcode SessionLostError}):
   * another client may hold it now.
   */
  get lost(): boolean {
    return this.#lost.signal.aborted;
  }

  /**
   * Aborts when the lock is lost, with a {@linkcode SessionLostError} as its
   * reason.
   *
   * @example
   * ```ts ignore
   * await client.withLock("ledger", async (lock) => {
   *   const rows = await fetchRows({ signal: lock.signal });
   *   lock.signal.throwIfAborted(); // still ours? then write
   *   await writeRows(rows);
   * });
   * ```
   */
  get signal(): AbortSignal {
    return this.#lost.signal;
  }

  /** Whether {@linkcode HeldLock.release} has been called. */
  get released(): boolean {
    return this.#released !== null;
  }

  /**
   * Releases the lock (`unlock`). Later calls return the first call's result.
   *
   * @returns `true` when the server released it, `false` when the session no
   *   longer held it
   * @throws {ConnectionClosedError} the connection is gone (the server then
   *   releases the lock when the session's release timeout ends)
   *
   * @example
   * ```ts ignore
   * const lock = await client.acquire("invoice-42");
   * await lock.release();
   * ```
   */
  release(): Promise<boolean> {
    this.#released ??= this.#unlock();
    return this.#released;
  }

  /**
   * Releases the lock; for `await using`.
   *
   * @example
   * ```ts ignore
   * await using lock = await client.acquire("invoice-42");
   * ```
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

/** Marks `lock` lost (its signal aborts with `reason`); the client calls it. @internal */
export function loseLock(lock: HeldLock, reason: SessionLostError): void {
  lostControllers.get(lock)?.abort(reason);
}
