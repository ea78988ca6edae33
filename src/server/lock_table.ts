/**
 * The lock table: sessions, exclusive and value locks, FIFO waiters with
 * deadlines, deadlock detection and session expiry. Runtime-neutral: it uses
 * only timers and `crypto.getRandomValues`.
 *
 * @module
 */

import { MAX_WAIT_SECONDS } from "../protocol/limits.ts";

/** A client session; it outlives its connection for `releaseTimeout` ms. */
export interface Session {
  /** Opaque id, handed out by `conn_id`. */
  readonly id: string;
  /** Milliseconds the session's locks survive a disconnect. */
  releaseTimeout: number;
  /** Whether a connection is attached to this session. */
  connected: boolean;
  /** Keys this session holds. */
  readonly held: Set<string>;
  /** The wait this session is in, if any. */
  waiting: Waiter | null;
  /** When a disconnected session expires (epoch ms), else 0. */
  expiresAt: number;
  /** Expiry timer of a disconnected session. */
  expiry: ReturnType<typeof setTimeout> | undefined;
}

/** A queued lock request. */
export interface Waiter {
  readonly session: Session;
  readonly key: string;
  /** `null` for an exclusive lock. */
  readonly value: string | null;
  readonly timer: ReturnType<typeof setTimeout> | undefined;
  readonly settle: (result: LockResult) => void;
}

/** State of one locked key. */
export interface KeyState {
  readonly key: string;
  /** `null` while held exclusively. */
  value: string | null;
  /** Holders in the order they got the lock. */
  readonly holders: Set<Session>;
  /** Waiters, first come first served. */
  readonly queue: Waiter[];
}

/** Outcome of a lock request. */
export type LockResult =
  | { readonly kind: "acquired" }
  | {
    readonly kind: "unavailable";
    readonly holders: readonly string[];
    readonly value: string | null;
  }
  | { readonly kind: "deadlock"; readonly path: string }
  /** The key is locked in the other mode (exclusive vs value). */
  | { readonly kind: "conflict" };

/** Outcome of an unlock. */
export type UnlockResult =
  | { readonly kind: "released" }
  | { readonly kind: "not_locked" }
  | { readonly kind: "not_yours"; readonly holders: readonly string[] };

/** Outcome of a resume (`conn_id ID`). */
export type ResumeResult =
  | "resumed"
  | "same"
  | "holds_locks"
  | "unknown"
  | "active";

/** Options of a {@linkcode LockTable}. */
export interface LockTableOptions {
  /** Hand out ids 1, 2, 3... instead of random ones. */
  sequentialIds?: boolean;
  /** Release timeout of a new session, in ms (default 30000). */
  defaultReleaseTimeout?: number;
  /** Answer a wait that would close a cycle of waiters with a deadlock (default true). */
  detectDeadlocks?: boolean;
}

const ACQUIRED: LockResult = Object.freeze({ kind: "acquired" });
/** Longest wait the table accepts, in ms (within a timer's limit). */
export const MAX_WAIT_MS: number = MAX_WAIT_SECONDS * 1000;

/**
 * Every lock, waiter and session of one server.
 *
 * @example
 * ```ts
 * const table = new LockTable();
 * const a = table.createSession();
 * table.lock(a, "k", null, 0); // { kind: "acquired" }
 * ```
 */
export class LockTable {
  readonly sessions: Map<string, Session> = new Map();
  readonly keys: Map<string, KeyState> = new Map();
  readonly #sequential: boolean;
  readonly #defaultReleaseTimeout: number;
  readonly #detectDeadlocks: boolean;
  #nextId = 1;
  #closed = false;

  constructor(options: LockTableOptions = {}) {
    this.#sequential = options.sequentialIds ?? false;
    this.#defaultReleaseTimeout = options.defaultReleaseTimeout ?? 30_000;
    this.#detectDeadlocks = options.detectDeadlocks ?? true;
  }

  /** Starts a new connected session with a fresh id. */
  createSession(): Session {
    const session: Session = {
      id: this.#newId(),
      releaseTimeout: this.#defaultReleaseTimeout,
      connected: true,
      held: new Set(),
      waiting: null,
      expiresAt: 0,
      expiry: undefined,
    };
    this.sessions.set(session.id, session);
    return session;
  }

  #newId(): string {
    if (this.#sequential) return String(this.#nextId++);
    for (;;) {
      const bytes = crypto.getRandomValues(new Uint8Array(12));
      const id = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-")
        .replaceAll("/", "_");
      if (!this.sessions.has(id)) return id;
    }
  }

  /**
   * Requests `key` (exclusive when `value` is null). With `waitMs` > 0 a
   * request that cannot be granted now is queued and the promise settles on
   * grant or deadline; otherwise the answer is immediate.
   */
  lock(
    session: Session,
    key: string,
    value: string | null,
    waitMs: number,
  ): LockResult | Promise<LockResult> {
    if (this.#closed) return { kind: "unavailable", holders: [], value: null };
    let state = this.keys.get(key);
    if (state === undefined) {
      state = { key, value, holders: new Set(), queue: [] };
      this.keys.set(key, state);
      this.#grant(state, session);
      return ACQUIRED;
    }
    if (state.holders.size > 0 && state.value !== value) {
      if (state.value === null || value === null) return { kind: "conflict" };
      if (state.holders.has(session)) return this.#unavailable(state);
    } else if (state.holders.has(session)) {
      return ACQUIRED;
    } else if (
      state.holders.size === 0 ||
      (value !== null && state.queue.length === 0)
    ) {
      if (state.holders.size === 0) state.value = value;
      this.#grant(state, session);
      return ACQUIRED;
    }
    const path = this.#detectDeadlocks ? this.#findCycle(session, state) : null;
    if (path !== null) return { kind: "deadlock", path };
    if (waitMs <= 0) return this.#unavailable(state);
    return new Promise<LockResult>((resolve) => {
      const waiter: Waiter = {
        session,
        key,
        value,
        timer: setTimeout(() => {
          this.#leaveQueue(waiter);
          resolve(this.#unavailable(state));
        }, Math.min(waitMs, MAX_WAIT_MS)),
        settle: resolve,
      };
      session.waiting = waiter;
      state.queue.push(waiter);
    });
  }

  /** Releases `key` held by `session`. */
  unlock(session: Session, key: string): UnlockResult {
    const state = this.keys.get(key);
    if (state === undefined || state.holders.size === 0) {
      return { kind: "not_locked" };
    }
    if (!state.holders.has(session)) {
      return { kind: "not_yours", holders: ids(state.holders) };
    }
    this.#release(state, session);
    return { kind: "released" };
  }

  /** Releases every key `session` holds. */
  unlockAll(session: Session): void {
    for (const key of [...session.held]) {
      const state = this.keys.get(key);
      if (state !== undefined) this.#release(state, session);
    }
  }

  /** Withdraws the wait `session` is in (its connection closed). */
  cancelWait(session: Session): void {
    const waiter = session.waiting;
    if (waiter === null) return;
    this.#leaveQueue(waiter);
    const state = this.keys.get(waiter.key);
    waiter.settle(
      state === undefined
        ? { kind: "unavailable", holders: [], value: null }
        : this.#unavailable(state),
    );
  }

  /**
   * Detaches `session` from its connection: its wait is withdrawn and its
   * locks are released now (release timeout 0) or when the timeout passes.
   */
  disconnect(session: Session, now: number = Date.now()): void {
    if (!session.connected) return;
    session.connected = false;
    this.cancelWait(session);
    if (this.#closed) return;
    if (session.releaseTimeout <= 0) {
      this.dispose(session);
      return;
    }
    session.expiresAt = now + session.releaseTimeout;
    session.expiry = setTimeout(
      () => this.dispose(session),
      Math.min(session.releaseTimeout, MAX_WAIT_MS),
    );
  }

  /** Ends `session`: releases its locks and forgets its id. */
  dispose(session: Session): void {
    clearTimeout(session.expiry);
    session.expiry = undefined;
    this.cancelWait(session);
    this.unlockAll(session);
    if (this.sessions.get(session.id) === session) {
      this.sessions.delete(session.id);
    }
  }

  /**
   * Moves the connection of `current` over to the disconnected session `id`.
   * `current` must not be waiting. On success the caller continues with the
   * returned session, and `current` (which holds nothing) is forgotten.
   */
  resume(
    current: Session,
    id: string,
  ): { result: ResumeResult; session: Session } {
    if (id === current.id) return { result: "same", session: current };
    if (current.held.size > 0) return { result: "holds_locks", session: current };
    const target = this.sessions.get(id);
    if (target === undefined) return { result: "unknown", session: current };
    if (target.connected) return { result: "active", session: current };
    clearTimeout(target.expiry);
    target.expiry = undefined;
    target.expiresAt = 0;
    target.connected = true;
    this.sessions.delete(current.id);
    return { result: "resumed", session: target };
  }

  /** Number of locked keys. */
  get lockCount(): number {
    let n = 0;
    for (const state of this.keys.values()) if (state.holders.size > 0) n++;
    return n;
  }

  /**
   * Clears every timer and answers every waiter "unavailable" (server
   * shutdown). Afterwards no lock is granted and no timer is started.
   */
  close(): void {
    this.#closed = true;
    const waiters: Waiter[] = [];
    for (const state of this.keys.values()) {
      waiters.push(...state.queue);
      state.queue.length = 0;
    }
    for (const waiter of waiters) {
      clearTimeout(waiter.timer);
      waiter.session.waiting = null;
      const state = this.keys.get(waiter.key);
      waiter.settle(
        state === undefined
          ? { kind: "unavailable", holders: [], value: null }
          : this.#unavailable(state),
      );
    }
    for (const session of this.sessions.values()) clearTimeout(session.expiry);
    this.sessions.clear();
    this.keys.clear();
  }

  #grant(state: KeyState, session: Session): void {
    state.holders.add(session);
    session.held.add(state.key);
  }

  #release(state: KeyState, session: Session): void {
    state.holders.delete(session);
    session.held.delete(state.key);
    this.#promote(state);
  }

  #leaveQueue(waiter: Waiter): void {
    clearTimeout(waiter.timer);
    if (waiter.session.waiting === waiter) waiter.session.waiting = null;
    const state = this.keys.get(waiter.key);
    if (state === undefined) return;
    const i = state.queue.indexOf(waiter);
    if (i !== -1) state.queue.splice(i, 1);
    this.#promote(state);
  }

  /** Grants waiters that can now go ahead; forgets a key nobody uses. */
  #promote(state: KeyState): void {
    for (;;) {
      const head = state.queue[0];
      if (head === undefined) break;
      if (state.holders.size === 0) {
        state.value = head.value;
      } else if (head.value === null || head.value !== state.value) {
        break;
      }
      // Grant the head and, for a value lock, every waiter for that value.
      const granted = head.value === null
        ? [head]
        : state.queue.filter((w) => w.value === head.value);
      for (const waiter of granted) {
        clearTimeout(waiter.timer);
        waiter.session.waiting = null;
        state.queue.splice(state.queue.indexOf(waiter), 1);
        this.#grant(state, waiter.session);
        waiter.settle(ACQUIRED);
      }
      if (head.value === null) break;
    }
    if (state.holders.size === 0 && state.queue.length === 0) {
      this.keys.delete(state.key);
    }
  }

  #unavailable(state: KeyState): LockResult {
    return { kind: "unavailable", holders: ids(state.holders), value: state.value };
  }

  /**
   * Follows "waits for key, key held by session" edges from the holders of
   * `state`; returns the cycle back to `requester` as
   * `#R => k1 = #A => k2 = #R`, or null.
   */
  #findCycle(requester: Session, state: KeyState): string | null {
    const seen = new Set<Session>();
    const walk = (key: KeyState, path: string): string | null => {
      for (const holder of key.holders) {
        const step = `${path} => ${key.key} = #${holder.id}`;
        if (holder === requester) return step;
        if (seen.has(holder)) continue;
        seen.add(holder);
        const next = holder.waiting && this.keys.get(holder.waiting.key);
        if (next) {
          const found = walk(next, step);
          if (found !== null) return found;
        }
      }
      return null;
    };
    return walk(state, `#${requester.id}`);
  }
}

function ids(holders: Set<Session>): string[] {
  return [...holders].map((s) => s.id);
}
