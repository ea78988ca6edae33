/**
 * The lock table: sessions, exclusive and value locks, FIFO waiters with
 * deadlines, deadlock detection, session expiry, per-session limits and the
 * grace period after start. Runtime-neutral: it uses only timers and
 * `crypto.getRandomValues`.
 *
 * Nothing on a lock, an unlock or a wait grows with the size of the table:
 * the counters `stats` prints are kept up to date as locks are granted and
 * released, and the deadlock search follows only the waits that could lead
 * back to the requester.
 *
 * @module
 */

import { MAX_WAIT_SECONDS } from "../protocol/limits.ts";
import { sessionName } from "../protocol/session_name.ts";
import type { ForceUnlockResult, LockStore, StoreDebug, StoreStats } from "./store.ts";

/** A client session; it outlives its connection for `releaseTimeout` ms. */
export interface Session {
  /**
   * Public name: what replies (`#ID`), `debug` and logs show. Derived from
   * {@linkcode Session.secret} by {@linkcode sessionName} (with sequential
   * ids, the id itself); it does not resume the session.
   */
  readonly id: string;
  /** Secret id, answered to `conn_id` on the session's own connection; `conn_id SECRET` resumes. */
  readonly secret: string;
  /** Milliseconds the session's locks survive a disconnect. */
  releaseTimeout: number;
  /** Whether a connection is attached to this session. */
  connected: boolean;
  /**
   * Keys this session holds, each with its fencing token: the number of the
   * grant that gave it (grants are counted across the table, so a key's
   * tokens only grow).
   */
  readonly held: Map<string, number>;
  /** The wait this session is in, if any. */
  waiting: Waiter | null;
  /** When a disconnected session expires (epoch ms), else 0. */
  expiresAt: number;
  /** Expiry timer of a disconnected session. */
  expiry: ReturnType<typeof setTimeout> | undefined;
  /**
   * Internal: how many keys this session holds that others wait for. A wait
   * can close a cycle only through such a key, so at 0 no search is needed.
   */
  contested: number;
  /** Internal: stamp of the last deadlock search that reached this session. */
  mark: number;
  /** `host:port` of the connection it was created or last resumed on, when known. */
  peer?: string | undefined;
  /** The name its client gave (`name` command), if any. */
  name?: string | undefined;
}

/** A queued lock request. */
export interface Waiter {
  readonly session: Session;
  readonly key: string;
  /** The state of `key` (it lives as long as the waiter is queued). */
  readonly state: KeyState;
  /** `null` for an exclusive lock. */
  readonly value: string | null;
  /**
   * When the wait ends unanswered (`performance.now()` ms). The table keeps
   * every deadline in one heap under one timer, not a timer per wait.
   */
  readonly deadline: number;
  /** Still queued: not granted, timed out nor withdrawn. */
  queued: boolean;
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
  /** Waiters in order; one shared empty (frozen) array while nobody waits. */
  queue: Waiter[];
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
  | { readonly kind: "conflict" }
  /** Not granted because the grace period after start is still running (no wait asked). */
  | { readonly kind: "grace" }
  /**
   * Refused by an operator limit: the session already holds `limit` keys
   * (`"held"`), or `limit` requests already wait for the key (`"waiters"`).
   */
  | { readonly kind: "limit"; readonly what: "held" | "waiters"; readonly limit: number };

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

/**
 * Keys one session may hold at once by default.
 *
 * @example
 * ```ts
 * const table = new LockTable({ maxHeldKeys: DEFAULT_MAX_HELD_KEYS / 10 });
 * ```
 */
export const DEFAULT_MAX_HELD_KEYS = 100_000;
/**
 * Requests that may wait for one key at once by default. (A session waits
 * for one key at a time: its connection's commands run in order.)
 *
 * @example
 * ```ts
 * const table = new LockTable({ maxWaitersPerKey: DEFAULT_MAX_WAITERS_PER_KEY / 10 });
 * ```
 */
export const DEFAULT_MAX_WAITERS_PER_KEY = 100_000;

/** Options of a {@linkcode LockTable}. */
export interface LockTableOptions {
  /** Hand out ids 1, 2, 3... instead of random ones (they are then also the public names). */
  sequentialIds?: boolean;
  /** Release timeout of a new session, in ms (default 30000). */
  defaultReleaseTimeout?: number;
  /** Answer a wait that would close a cycle of waiters with a deadlock (default true). */
  detectDeadlocks?: boolean;
  /** Keys one session may hold at once (default 100,000); beyond it a lock is refused. */
  maxHeldKeys?: number;
  /** Requests that may wait for one key at once (default 100,000); beyond it a wait is refused. */
  maxWaitersPerKey?: number;
  /**
   * Grace period after start, in ms (default 0, off): no key is granted for
   * that long. Waits queue and are granted in order when it ends; a lock
   * without a wait is refused ({@linkcode LockResult} `"grace"`).
   */
  graceMs?: number;
}

/** The queue of every key nobody waits for (a lock costs no array of its own). */
const NO_WAITERS: Waiter[] = Object.freeze([]) as unknown as Waiter[];
const RELEASED: UnlockResult = Object.freeze({ kind: "released" });
const NOT_LOCKED: UnlockResult = Object.freeze({ kind: "not_locked" });
const ACQUIRED: LockResult = Object.freeze({ kind: "acquired" });
const CONFLICT: LockResult = Object.freeze({ kind: "conflict" });
const GRACE: LockResult = Object.freeze({ kind: "grace" });
const NOBODY: LockResult = Object.freeze({ kind: "unavailable", holders: [], value: null });
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
export class LockTable implements LockStore<Session> {
  /** Sessions by secret id. */
  readonly sessions: Map<string, Session> = new Map();
  readonly keys: Map<string, KeyState> = new Map();
  readonly #sequential: boolean;
  readonly #defaultReleaseTimeout: number;
  readonly #detectDeadlocks: boolean;
  readonly #heldLimit: LockResult;
  readonly #maxHeld: number;
  readonly #waitersLimit: LockResult;
  readonly #maxWaiters: number;
  #nextId = 1;
  /** Grants so far: the fencing token of the last one. */
  #grants = 0;
  #closed = false;
  /** Keys with at least one holder. */
  #locked = 0;
  /** Queued waits. */
  #waiting = 0;
  #grace: ReturnType<typeof setTimeout> | undefined;
  /** Deadlock search: stamp of the current search, sessions reached, how. */
  #epoch = 0;
  readonly #reached: Session[] = [];
  readonly #from: number[] = [];
  readonly #stack: number[] = [];
  /** Queued waiters by deadline (a binary min-heap); ones no longer queued are dropped lazily. */
  readonly #deadlines: Waiter[] = [];
  /** Waiters in `#deadlines` that are no longer queued. */
  #deadWaits = 0;
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  /** The deadline `#deadlineTimer` is set for. */
  #timerAt = Infinity;

  constructor(options: LockTableOptions = {}) {
    this.#sequential = options.sequentialIds ?? false;
    this.#defaultReleaseTimeout = options.defaultReleaseTimeout ?? 30_000;
    this.#detectDeadlocks = options.detectDeadlocks ?? true;
    this.#maxHeld = positive("maxHeldKeys", options.maxHeldKeys ?? DEFAULT_MAX_HELD_KEYS);
    this.#maxWaiters = positive(
      "maxWaitersPerKey",
      options.maxWaitersPerKey ?? DEFAULT_MAX_WAITERS_PER_KEY,
    );
    this.#heldLimit = Object.freeze({ kind: "limit", what: "held", limit: this.#maxHeld });
    this.#waitersLimit = Object.freeze({ kind: "limit", what: "waiters", limit: this.#maxWaiters });
    const graceMs = options.graceMs ?? 0;
    if (!Number.isInteger(graceMs) || graceMs < 0 || graceMs > MAX_WAIT_MS) {
      throw new RangeError(`Invalid graceMs: ${graceMs} (a whole number of ms, 0 for none)`);
    }
    if (graceMs > 0) this.#grace = setTimeout(() => this.#endGrace(), graceMs);
  }

  /** Starts a new connected session with a fresh id; `peer`: the `host:port` of its connection. */
  createSession(peer?: string): Session {
    const secret = this.#newId();
    const session: Session = {
      id: this.publicName(secret),
      secret,
      releaseTimeout: this.#defaultReleaseTimeout,
      connected: true,
      held: new Map(),
      waiting: null,
      expiresAt: 0,
      expiry: undefined,
      contested: 0,
      mark: 0,
      peer,
      name: undefined,
    };
    this.sessions.set(secret, session);
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
    if (this.#closed) return NOBODY;
    let state = this.keys.get(key);
    if (state !== undefined && state.holders.has(session)) {
      // Re-entrant; or held by this session in another mode or value.
      if (state.value === value) return ACQUIRED;
      return state.value === null || value === null ? CONFLICT : this.#unavailable(state);
    }
    if (
      state !== undefined && state.holders.size > 0 && state.value !== value &&
      (state.value === null || value === null)
    ) {
      return CONFLICT;
    }
    if (session.held.size >= this.#maxHeld) return this.#heldLimit;
    if (state === undefined) {
      if (this.#grace === undefined) {
        state = { key, value, holders: new Set(), queue: NO_WAITERS };
        this.keys.set(key, state);
        this.#grant(state, session);
        return ACQUIRED;
      }
      if (waitMs <= 0) return GRACE;
      state = { key, value, holders: new Set(), queue: NO_WAITERS };
      this.keys.set(key, state);
    } else if (
      this.#grace === undefined &&
      (state.holders.size === 0 ||
        (value !== null && state.value === value && state.queue.length === 0))
    ) {
      // Free, or shared with the holders of the same value and nobody queued before.
      if (state.holders.size === 0) state.value = value;
      this.#grant(state, session);
      return ACQUIRED;
    } else {
      // A cycle back to `session` must end in a wait for a key it holds.
      const path = this.#detectDeadlocks && session.contested > 0
        ? this.#findCycle(session, state)
        : null;
      if (path !== null) return { kind: "deadlock", path };
      if (waitMs <= 0) return this.#unavailable(state);
      if (state.queue.length >= this.#maxWaiters) return this.#waitersLimit;
    }
    const queued = state;
    return new Promise<LockResult>((resolve) => {
      const waiter: Waiter = {
        session,
        key,
        state: queued,
        value,
        deadline: performance.now() + Math.min(waitMs, MAX_WAIT_MS),
        queued: true,
        settle: resolve,
      };
      this.#enqueue(queued, waiter);
      this.#addDeadline(waiter);
    });
  }

  /** Releases `key` held by `session`. */
  unlock(session: Session, key: string): UnlockResult {
    const state = this.keys.get(key);
    if (state === undefined || state.holders.size === 0) {
      return NOT_LOCKED;
    }
    if (!state.holders.has(session)) {
      return { kind: "not_yours", holders: ids(state.holders) };
    }
    this.#release(state, session);
    return RELEASED;
  }

  /**
   * The fencing token of `key` held by `session` (the number of the grant
   * that gave it), or `null` when it does not hold it.
   */
  fence(session: Session, key: string): number | null {
    return session.held.get(key) ?? null;
  }

  /** Releases every key `session` holds. */
  unlockAll(session: Session): void {
    if (session.held.size === 0) return;
    for (const key of [...session.held.keys()]) {
      const state = this.keys.get(key);
      if (state !== undefined) this.#release(state, session);
    }
  }

  /** Withdraws the wait `session` is in (its connection closed). */
  cancelWait(session: Session): void {
    const waiter = session.waiting;
    if (waiter === null) return;
    this.#leaveQueue(waiter);
    waiter.settle(this.#closed ? NOBODY : this.#unavailable(waiter.state));
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
    if (this.sessions.get(session.secret) === session) {
      this.sessions.delete(session.secret);
    }
  }

  /**
   * Moves the connection of `current` over to the disconnected session whose
   * secret id is `secret` (a public name never resumes). `current` must not
   * be waiting. On success the caller continues with the returned session,
   * and `current` (which holds nothing) is forgotten.
   */
  resume(
    current: Session,
    secret: string,
  ): { result: ResumeResult; session: Session } {
    if (secret === current.secret) return { result: "same", session: current };
    if (current.held.size > 0) return { result: "holds_locks", session: current };
    const target = this.sessions.get(secret);
    if (target === undefined) return { result: "unknown", session: current };
    if (target.connected) return { result: "active", session: current };
    clearTimeout(target.expiry);
    target.expiry = undefined;
    target.expiresAt = 0;
    target.connected = true;
    if (current.peer !== undefined) target.peer = current.peer;
    this.sessions.delete(current.secret);
    return { result: "resumed", session: target };
  }

  /**
   * The public name of the session whose secret id is `secret` (whether such
   * a session exists or not): what logs show in place of a secret.
   */
  publicName(secret: string): string {
    return this.#sequential ? secret : sessionName(secret);
  }

  /** Sets the release timeout of `session`, in ms (the store seam's `set_timeout`). */
  setReleaseTimeout(session: Session, ms: number): void {
    session.releaseTimeout = ms;
  }

  /** Sets the client name of `session` (the `name` command). */
  setName(session: Session, name: string): void {
    session.name = name;
  }

  /**
   * Frees `key` whoever holds it (`force_unlock`): every holder loses it, and
   * the next waiter gets it.
   */
  forceUnlock(key: string): ForceUnlockResult {
    const state = this.keys.get(key);
    if (state === undefined || state.holders.size === 0) return { holders: [] };
    const holders = [...state.holders];
    for (const holder of holders) this.#release(state, holder);
    return { holders: holders.map((h) => h.id) };
  }

  /** `stats` of the table (O(1)). */
  stats(): StoreStats {
    return { clients: this.sessions.size, locks: this.#locked };
  }

  /** `debug` of the table: every session, lock and queued request. */
  debug(): StoreDebug {
    const now = Date.now();
    const sessions = [...this.sessions.values()].map((s) => ({
      id: s.id,
      releaseTimeout: s.releaseTimeout,
      expiresIn: s.connected ? null : Math.max(0, s.expiresAt - now),
      peer: s.peer ?? null,
      name: s.name ?? null,
    }));
    const locks: StoreDebug["locks"][number][] = [];
    const requests: StoreDebug["requests"][number][] = [];
    for (const state of this.keys.values()) {
      if (state.holders.size > 0) {
        locks.push({ key: state.key, holders: ids(state.holders), value: state.value });
      }
      for (const w of state.queue) requests.push({ session: w.session.id, key: w.key });
    }
    return { sessions, locks, requests };
  }

  /** Number of locked keys (kept as locks come and go: O(1)). */
  get lockCount(): number {
    return this.#locked;
  }

  /** Number of queued waits (O(1)). */
  get waitingCount(): number {
    return this.#waiting;
  }

  /** Whether the grace period after start is still running (no key is granted). */
  get inGrace(): boolean {
    return this.#grace !== undefined;
  }

  /**
   * Clears every timer and answers every waiter "unavailable" (server
   * shutdown). Afterwards no lock is granted and no timer is started.
   */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#grace);
    this.#grace = undefined;
    const waiters: Waiter[] = [];
    for (const state of this.keys.values()) {
      for (const waiter of state.queue) waiters.push(waiter);
      state.queue = NO_WAITERS;
    }
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    this.#deadlines.length = 0;
    this.#deadWaits = 0;
    for (const waiter of waiters) {
      waiter.queued = false;
      waiter.session.waiting = null;
      waiter.settle(
        waiter.state.holders.size === 0 ? NOBODY : this.#unavailable(waiter.state),
      );
    }
    for (const session of this.sessions.values()) clearTimeout(session.expiry);
    this.sessions.clear();
    this.keys.clear();
    this.#locked = 0;
    this.#waiting = 0;
  }

  #endGrace(): void {
    this.#grace = undefined;
    if (this.#closed) return;
    // Only keys with waiters exist during the grace period (nothing is held).
    for (const state of [...this.keys.values()]) this.#promote(state);
  }

  #grant(state: KeyState, session: Session): void {
    if (state.holders.size === 0) this.#locked++;
    state.holders.add(session);
    session.held.set(state.key, ++this.#grants);
    if (state.queue.length > 0) session.contested++;
  }

  #release(state: KeyState, session: Session): void {
    state.holders.delete(session);
    session.held.delete(state.key);
    if (state.holders.size === 0) this.#locked--;
    if (state.queue.length > 0) session.contested--;
    this.#promote(state);
  }

  #enqueue(state: KeyState, waiter: Waiter): void {
    if (state.queue.length === 0) { for (const holder of state.holders) holder.contested++; }
    if (state.queue === NO_WAITERS) state.queue = [];
    state.queue.push(waiter);
    waiter.session.waiting = waiter;
    this.#waiting++;
  }

  /** Takes the waiter at `index` out of the queue of `state`. */
  #dequeue(state: KeyState, index: number): void {
    if (index === 0) state.queue.shift();
    else state.queue.splice(index, 1);
    this.#waiting--;
    if (state.queue.length === 0) {
      state.queue = NO_WAITERS;
      for (const holder of state.holders) holder.contested--;
    }
  }

  #leaveQueue(waiter: Waiter): void {
    this.#retire(waiter);
    if (waiter.session.waiting === waiter) waiter.session.waiting = null;
    const state = waiter.state;
    const i = state.queue.indexOf(waiter);
    if (i === -1) return;
    this.#dequeue(state, i);
    this.#promote(state);
  }

  /** Grants waiters that can now go ahead; forgets a key nobody uses. */
  #promote(state: KeyState): void {
    const queue = state.queue;
    const head = queue[0];
    if (head !== undefined && this.#grace === undefined) {
      if (state.holders.size === 0) {
        state.value = head.value;
      }
      if (head.value === null) {
        if (state.holders.size === 0) {
          this.#dequeue(state, 0);
          this.#handOver(state, head);
        }
      } else if (head.value === state.value) {
        // Every waiter for that value is granted together, in queue order.
        const value = head.value;
        const granted: Waiter[] = [];
        let kept = 0;
        for (const waiter of queue) {
          if (waiter.value === value) granted.push(waiter);
          else queue[kept++] = waiter;
        }
        queue.length = kept;
        if (kept === 0) state.queue = NO_WAITERS;
        this.#waiting -= granted.length;
        if (kept === 0) { for (const holder of state.holders) holder.contested--; }
        for (const waiter of granted) this.#handOver(state, waiter);
      }
    }
    if (state.holders.size === 0 && queue.length === 0) {
      this.keys.delete(state.key);
    }
  }

  /** Grants `state` to `waiter`, already out of the queue. */
  #handOver(state: KeyState, waiter: Waiter): void {
    this.#retire(waiter);
    waiter.session.waiting = null;
    this.#grant(state, waiter.session);
    waiter.settle(ACQUIRED);
  }

  #addDeadline(waiter: Waiter): void {
    const heap = this.#deadlines;
    let i = heap.length;
    heap.push(waiter);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.deadline <= waiter.deadline) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = waiter;
    if (waiter.deadline < this.#timerAt) this.#armDeadline(waiter.deadline);
  }

  #armDeadline(at: number): void {
    clearTimeout(this.#deadlineTimer);
    this.#timerAt = at;
    this.#deadlineTimer = setTimeout(
      () => this.#expire(),
      Math.max(1, Math.ceil(at - performance.now())),
    );
  }

  /** Answers every wait whose deadline has passed, and sets the timer for the next one. */
  #expire(): void {
    this.#deadlineTimer = undefined;
    this.#timerAt = Infinity;
    const heap = this.#deadlines;
    const now = performance.now();
    while (heap.length > 0) {
      const top = heap[0]!;
      if (top.queued && top.deadline > now) break;
      this.#popDeadline();
      if (!top.queued) {
        this.#deadWaits--;
        continue;
      }
      // Out of the heap already: #retire must not count it there.
      top.queued = false;
      this.#leaveQueue(top);
      top.settle(this.#unavailable(top.state));
    }
    if (heap.length > 0) this.#armDeadline(heap[0]!.deadline);
  }

  #popDeadline(): void {
    const heap = this.#deadlines;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && heap[right]!.deadline < heap[left]!.deadline
        ? right
        : left;
      if (heap[child]!.deadline >= last.deadline) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }

  /** `waiter` leaves the queue: its deadline no longer counts (dropped from the heap lazily). */
  #retire(waiter: Waiter): void {
    if (!waiter.queued) return;
    waiter.queued = false;
    const heap = this.#deadlines;
    if (++this.#deadWaits === heap.length) {
      // Nothing waits: forget every deadline (and what they reach) at once.
      heap.length = 0;
      this.#deadWaits = 0;
      clearTimeout(this.#deadlineTimer);
      this.#deadlineTimer = undefined;
      this.#timerAt = Infinity;
    } else if (this.#deadWaits > 64 && this.#deadWaits * 2 > heap.length) {
      // Mostly dead: keep the live ones (sorted is a heap).
      let kept = 0;
      for (const w of heap) if (w.queued) heap[kept++] = w;
      heap.length = kept;
      heap.sort((a, b) => a.deadline - b.deadline);
      this.#deadWaits = 0;
    }
  }

  #unavailable(state: KeyState): LockResult {
    if (state.holders.size === 0 && this.#grace !== undefined) return GRACE;
    return { kind: "unavailable", holders: ids(state.holders), value: state.value };
  }

  /**
   * Follows "waits for key, key held by session" edges from the holders of
   * `state`, without recursion; returns the cycle back to `requester` as
   * `#R => k1 = #A => k2 = #R`, or null. Each session is visited at most
   * once, and only sessions that wait are followed, so the cost is the
   * number of waits reachable from `state` (a chain's length), not the size
   * of the table.
   */
  #findCycle(requester: Session, state: KeyState): string | null {
    const epoch = ++this.#epoch;
    const reached = this.#reached;
    const from = this.#from;
    const stack = this.#stack;
    let keyState = state;
    let via = -1;
    try {
      for (;;) {
        for (const holder of keyState.holders) {
          if (holder === requester) return this.#cyclePath(requester, state, via);
          if (holder.mark === epoch || holder.waiting === null) continue;
          holder.mark = epoch;
          stack.push(reached.length);
          reached.push(holder);
          from.push(via);
        }
        const next = stack.pop();
        if (next === undefined) return null;
        via = next;
        keyState = reached[next]!.waiting!.state;
      }
    } finally {
      reached.length = 0;
      from.length = 0;
      stack.length = 0;
    }
  }

  /** The path `#R => K = #A => ... = #R`, from the search's record of who reached whom. */
  #cyclePath(requester: Session, state: KeyState, last: number): string {
    const chain: Session[] = [];
    for (let i = last; i !== -1; i = this.#from[i]!) chain.push(this.#reached[i]!);
    let path = `#${requester.id} => ${state.key}`;
    for (let i = chain.length - 1; i >= 0; i--) {
      const session = chain[i]!;
      path += ` = #${session.id} => ${session.waiting!.key}`;
    }
    return `${path} = #${requester.id}`;
  }
}

function ids(holders: Set<Session>): string[] {
  const out: string[] = [];
  for (const s of holders) out.push(s.id);
  return out;
}

function positive(name: string, n: number): number {
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`Invalid ${name}: ${n} (a whole number, at least 1)`);
  }
  return n;
}
