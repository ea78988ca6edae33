/**
 * The handle of a held lock, as {@linkcode ELockClient.acquire} returns it.
 *
 * @module
 */

/**
 * A lock held by a client's session. Release it with {@linkcode HeldLock.release}
 * or let `await using` do it.
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
