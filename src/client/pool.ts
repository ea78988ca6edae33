/**
 * The sessions a client's handles are taken on: one leased per unit of
 * work (a wait, then the hold), like a database pool leases a connection
 * per transaction, so a request waiting on one key never holds back a
 * request for another. The client's own session comes first; the others
 * are opened when first needed, up to the pool's size.
 *
 * @module
 */

import { connIdCommand } from "../protocol/commands.ts";
import { DeadlineError } from "../protocol/connection.ts";
import type { Session } from "./session.ts";

interface Waiter {
  take(session: Session): void;
}

/** See the module doc. */
export class SessionPool {
  readonly #sessions: Session[];
  readonly #size: number;
  readonly #open: () => Promise<Session>;
  readonly #leased = new Set<Session>();
  readonly #waiters: Waiter[] = [];
  #opening = 0;

  /**
   * @param primary the client's own session
   * @param size how many sessions at most
   * @param open opens another session
   */
  constructor(primary: Session, size: number, open: () => Promise<Session>) {
    this.#sessions = [primary];
    this.#size = size;
    this.#open = open;
  }

  /** Every session opened, the client's own first. */
  get sessions(): readonly Session[] {
    return this.#sessions;
  }

  /**
   * Leases a free session: one not leased and not busy with a wait, opening
   * one while under the size, else waiting for one to come back.
   *
   * @throws {DeadlineError} the deadline (ms from now) passed first
   * @throws the signal's reason when aborted first
   */
  lease(options: { deadline: number; signal?: AbortSignal | undefined }): Promise<Session> {
    const free = this.#free();
    if (free !== undefined) {
      this.#leased.add(free);
      return Promise.resolve(free);
    }
    if (this.#sessions.length + this.#opening < this.#size) return this.#openOne();
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
      const waiter: Waiter = {
        take: (session) => {
          cleanup();
          resolve(session);
        },
      };
      const giveUp = (reason: unknown) => {
        cleanup();
        reject(reason);
      };
      const onAbort = () => giveUp(signal!.reason);
      this.#waiters.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (Number.isFinite(deadline)) {
        timer = setTimeout(() => giveUp(new DeadlineError()), Math.min(deadline, 2 ** 31 - 1));
      }
    });
  }

  /** Gives a leased session back: to the first waiter once it is not busy with a wait. */
  give(session: Session): void {
    if (session.connection.waiting && !session.closed) {
      // An abandoned wait still occupies it: it comes back once the server answered.
      session.request(connIdCommand()).then(() => this.give(session), () => this.give(session));
      return;
    }
    this.#leased.delete(session);
    if (session.closed) this.#remove(session);
    else this.#handOut(session);
  }

  #free(): Session | undefined {
    for (const session of [...this.#sessions]) {
      if (session.closed) this.#remove(session);
      else if (!this.#leased.has(session) && !session.connection.waiting) return session;
    }
    return undefined;
  }

  #handOut(session: Session): void {
    const waiter = this.#waiters.shift();
    if (waiter === undefined) return;
    this.#leased.add(session);
    waiter.take(session);
  }

  async #openOne(): Promise<Session> {
    this.#opening++;
    try {
      const session = await this.#open();
      this.#sessions.push(session);
      this.#leased.add(session);
      return session;
    } finally {
      this.#opening--;
    }
  }

  #remove(session: Session): void {
    const at = this.#sessions.indexOf(session);
    // The client's own session stays first, even closed: the client is closed then.
    if (at > 0) this.#sessions.splice(at, 1);
  }
}
