/**
 * The handle of a held lock, as {@linkcode ELockClient.acquire} returns it.
 *
 * @module
 */

import type { SessionLostError } from "../errors.ts";

interface Binding {
  readonly lost: AbortController;
  release: ((lost: boolean) => Promise<boolean>) | null;
  readonly session: unknown;
}

const bindings = new WeakMap<HeldLock, Binding>();

/**
 * A lock held by one session of a client. Release it with
 * {@linkcode HeldLock.release} or let `await using` do it.
 *
 * A handle belongs to the session that took it, for good. It is lost when
 * that session is lost (the connection dropped and the session was not
 * resumed in time), when no reply has come for so long that the server may
 * have released the session (the lease, see docs/FAILURES.md, Failure
 * semantics), or when a raw {@linkcode ELockClient.unlock} or
 * `unlockAll()` of the same session released the key: then
 * {@linkcode HeldLock.lost} becomes `true` and {@linkcode HeldLock.signal}
 * aborts with a {@linkcode SessionLostError}. A lost handle stays lost;
 * releasing it sends nothing. Check the signal before each side effect that
 * needs the lock, or pass it to the calls that make them.
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
  /**
   * The fencing token of this grant (`acquire(key, { fence: true })`, the
   * bundled server's `fence` command): a number that grows with every grant
   * of the key. Pass it to the resource you guard, and have it refuse a
   * token lower than the highest it has seen: a holder that paused past the
   * loss of its lock is then refused, not trusted. `undefined` unless asked.
   *
   * @example
   * ```ts ignore
   * const lock = await client.acquire("ledger", { fence: true });
   * await db.write(rows, { fencingToken: lock.token });
   * ```
   */
  token: bigint | undefined = undefined;
  readonly #binding: Binding;
  #released: Promise<boolean> | null = null;

  /**
   * Made by {@linkcode ELockClient.acquire}; not meant to be built by hand.
   *
   * @param key the key
   * @param value the value of a value lock, or `null`
   * @param session the session that holds it (opaque)
   */
  constructor(key: string, value: string | null, session: unknown) {
    this.key = key;
    this.value = value;
    this.#binding = { lost: new AbortController(), release: null, session };
    bindings.set(this, this.#binding);
  }

  /**
   * Whether the lock was lost (see {@linkcode SessionLostError}): another
   * client may hold it now.
   */
  get lost(): boolean {
    return this.#binding.lost.signal.aborted;
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
    return this.#binding.lost.signal;
  }

  /** Whether {@linkcode HeldLock.release} has been called. */
  get released(): boolean {
    return this.#released !== null;
  }

  /**
   * Releases the lock (`unlock`). Later calls return the first call's
   * result. A lost lock is not unlocked: that could free the key for
   * whoever holds it now.
   *
   * @returns `true` when the server released it; `false` when the lock was
   *   lost (before or while releasing) or the session no longer held it
   * @throws {ConnectionClosedError} the connection failed while releasing
   *   (a closed client's handles are lost: their release resolves `false`,
   *   and the server releases the locks when the release timeout ends)
   *
   * @example
   * ```ts ignore
   * const lock = await client.acquire("invoice-42");
   * await lock.release();
   * ```
   */
  release(): Promise<boolean> {
    this.#released ??= this.#release();
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

  #release(): Promise<boolean> {
    const { lost, release } = this.#binding;
    if (release === null) return Promise.resolve(false);
    if (lost.signal.aborted) return release(true).then(() => false, () => false);
    return new Promise<boolean>((resolve, reject) => {
      const onLost = () => resolve(false);
      lost.signal.addEventListener("abort", onLost, { once: true });
      release(false).then(
        (released) => resolve(released && !lost.signal.aborted),
        (error) => (lost.signal.aborted ? resolve(false) : reject(error)),
      ).finally(() => lost.signal.removeEventListener("abort", onLost));
    });
  }
}

/** Marks `lock` lost (its signal aborts with `reason`). @internal */
export function loseLock(lock: HeldLock, reason: SessionLostError): void {
  const binding = bindings.get(lock);
  if (binding === undefined || binding.lost.signal.aborted) return;
  binding.lost.abort(reason);
}

/** Gives `lock` what releases it, once it is granted. @internal */
export function bindRelease(lock: HeldLock, release: (lost: boolean) => Promise<boolean>): void {
  const binding = bindings.get(lock);
  if (binding !== undefined) binding.release = release;
}

/** The session a lock belongs to (opaque to this module). @internal */
export function sessionOf(lock: HeldLock): unknown {
  return bindings.get(lock)?.session;
}
