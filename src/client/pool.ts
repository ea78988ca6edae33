/**
 * The sessions a client's handles are taken on: one leased per unit of
 * work (a wait, then the hold), like a database pool leases a connection
 * per transaction, so a request waiting on one key never holds back a
 * request for another. The client's own session comes first; the others
 * are opened when first needed, up to the pool's size.
 *
 * @module
 */

import { ConnectionClosedError } from "../errors.ts";
import { connIdCommand } from "../protocol/commands.ts";
import { DeadlineError } from "../protocol/connection.ts";
import type { Session } from "./session.ts";

interface Waiter {
  readonly key: string;
  take(session: Session): void;
  fail(error: unknown): void;
}

/** See the module doc. */
export class SessionPool {
  readonly #sessions: Session[];
  readonly #size: number;
  readonly #open: (signal: AbortSignal | undefined) => Promise<Session>;
  /** How many units of work hold each session. */
  readonly #leased = new Map<Session, number>();
  readonly #waiters: Waiter[] = [];
  #opening = 0;
  #closed = false;
  readonly #watched = new Set<Session>();

  /**
   * @param primary the client's own session
   * @param size how many sessions at most
   * @param open opens another session
   */
  constructor(
    primary: Session,
    size: number,
    open: (signal: AbortSignal | undefined) => Promise<Session>,
  ) {
    this.#sessions = [primary];
    this.#size = size;
    this.#open = open;
  }

  /** Every session opened, the client's own first. */
  get sessions(): readonly Session[] {
    return this.#sessions;
  }

  /**
   * Leases a session: one nobody holds and not busy with a wait; else a new
   * one while under the size; else, shared, the least held one not busy with
   * a wait (so a task holding more locks than the pool has sessions never
   * waits for itself); else waits for one to finish its wait.
   *
   * @throws {DeadlineError} the deadline (ms from now) passed first
   * @throws the signal's reason when aborted first
   */
  lease(
    options: { deadline: number; signal?: AbortSignal | undefined; key: string },
  ): Promise<Session> {
    const { key } = options;
    const free = this.#free(false, key);
    if (free !== undefined) return Promise.resolve(this.#take(free));
    if (this.#closed) {
      return Promise.reject(new ConnectionClosedError("Connection closed: by the client"));
    }
    if (this.#sessions.length + this.#opening < this.#size) return this.#openOne(options.signal);
    const shared = this.#free(true, key);
    if (shared !== undefined) return Promise.resolve(this.#take(shared));
    const { deadline, signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<Session>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
      };
      const giveUp = (reason: unknown) => {
        cleanup();
        reject(reason);
      };
      const waiter: Waiter = {
        key,
        take: (session) => {
          cleanup();
          resolve(session);
        },
        fail: giveUp,
      };
      const onAbort = () => giveUp(signal!.reason);
      this.#waiters.push(waiter);
      this.#watchWaits();
      signal?.addEventListener("abort", onAbort, { once: true });
      if (Number.isFinite(deadline)) {
        timer = setTimeout(() => giveUp(new DeadlineError()), Math.min(deadline, 2 ** 31 - 1));
      }
    });
  }

  /** Gives a leased session back; a waiter takes it once it is not busy with a wait. */
  give(session: Session): void {
    const count = (this.#leased.get(session) ?? 1) - 1;
    if (count > 0) this.#leased.set(session, count);
    else this.#leased.delete(session);
    if (session.closed) {
      this.#remove(session);
      return;
    }
    this.#handOut();
  }

  /** Hands out sessions once the waits that occupy them are answered. */
  #watchWaits(): void {
    for (const session of this.#sessions) {
      if (!session.connection.waiting || session.closed || this.#watched.has(session)) continue;
      this.#watched.add(session);
      // Sent behind the wait: its reply says the connection is free again.
      const free = () => {
        this.#watched.delete(session);
        this.#handOut();
      };
      session.request(connIdCommand()).then(free, free);
    }
  }

  /** A session may have finished a wait: waiters may take it now. */
  poke(): void {
    if (this.#waiters.length > 0) this.#handOut();
  }

  #take(session: Session): Session {
    this.#leased.set(session, (this.#leased.get(session) ?? 0) + 1);
    return session;
  }

  /**
   * Not busy with a wait, not holding `key` (a raw `lock()` of the client's
   * own session: the pool's lock must exclude it, not re-enter it); nobody's
   * (or, `shared`, the least held).
   */
  #free(shared: boolean, key?: string): Session | undefined {
    let best: Session | undefined;
    for (const session of [...this.#sessions]) {
      if (session.closed) {
        this.#remove(session);
        continue;
      }
      if (session.connection.waiting) continue;
      if (key !== undefined && session.ledger.claimed(key)) continue;
      const count = this.#leased.get(session) ?? 0;
      if (count === 0) return session;
      if (shared && (best === undefined || count < (this.#leased.get(best) ?? 0))) best = session;
    }
    return shared ? best : undefined;
  }

  #handOut(): void {
    while (this.#waiters.length > 0) {
      const session = this.#free(true, this.#waiters[0]!.key);
      if (session === undefined) return this.#watchWaits();
      this.#waiters.shift()!.take(this.#take(session));
    }
  }

  /** No more sessions are opened; one being opened is closed when it is. */
  close(): void {
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) {
      waiter.fail(new ConnectionClosedError("Connection closed: by the client"));
    }
  }

  async #openOne(signal: AbortSignal | undefined): Promise<Session> {
    this.#opening++;
    try {
      const session = await this.#open(signal);
      if (this.#closed) {
        await session.close();
        throw new ConnectionClosedError("Connection closed: by the client");
      }
      this.#sessions.push(session);
      return this.#take(session);
    } finally {
      this.#opening--;
      queueMicrotask(() => this.#handOut());
    }
  }

  #remove(session: Session): void {
    const at = this.#sessions.indexOf(session);
    // The client's own session stays first, even closed: the client is closed then.
    if (at > 0) this.#sessions.splice(at, 1);
  }
}
