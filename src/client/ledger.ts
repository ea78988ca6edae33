/**
 * What one eLock session holds, per wire key, kept from replies in wire
 * order: the one place that decides whether a grant nobody saw is released.
 *
 * @module
 */

import type { SessionLostError } from "../errors.ts";
import type { Reply } from "../protocol/reply_reader.ts";

/** A live holder of a key: told when it stops holding without releasing. */
export interface Claim {
  /** The key was lost (the session was lost, or a raw unlock freed it). */
  lose(error: SessionLostError): void;
}

interface KeyState {
  /** The server's view, from replies in wire order; `"maybe"`: a reply was lost. */
  held: boolean | "maybe";
  /** A raw `lock()` caller saw a grant (raw locks are re-entrant, not counted). */
  raw: boolean;
  /** The handles holding it. */
  readonly claims: Set<Claim>;
  /** Live lock requests, queued or in flight: a grant may still come for them. */
  pending: number;
  /** How many of them are raw `lock()` calls. */
  rawPending: number;
  /** An unlock is in flight. */
  releasing: boolean;
}

/**
 * The ledger of one session. Lock requests go through a
 * {@linkcode LockTicket}; the ledger releases a key (by `release`, an unlock
 * sent ahead of every queued call) when, in wire order, the session may hold
 * it while no live caller claims it and no live lock of it is coming.
 */
export class SessionLedger {
  readonly #keys = new Map<string, KeyState>();
  /** How many keys are held, or maybe held. */
  #held = 0;
  readonly #release: (wire: string, done: (reply: Reply | null) => void) => void;
  /** Counts session losses: a grant sent in an older epoch is not believed. */
  epoch = 0;
  /**
   * A lock was granted in the original dialect's words (`200 Acquired`):
   * the Erlang server keeps a key its session handed over on that session's
   * list and frees it when the session ends (its defect 9), so this session
   * is not ended early ({@linkcode Supervisor.renew}).
   */
  grantedOriginal = false;

  /** Notes a lock reply: see {@linkcode SessionLedger.grantedOriginal}. */
  noteGrant(reply: Reply | null): void {
    if (reply !== null && reply.code === 200 && reply.message === "Acquired") {
      this.grantedOriginal = true;
    }
  }

  /**
   * @param release sends `unlock WIRE` ahead of queued calls; calls `done`
   *   with its reply in wire order, or with `null` when it was not answered
   */
  constructor(release: (wire: string, done: (reply: Reply | null) => void) => void) {
    this.#release = release;
  }

  /** Whether any key is held, or may be. */
  get holding(): boolean {
    return this.#held > 0;
  }

  /** The keys held, or maybe held, as on the wire. */
  keys(): string[] {
    return [...this.#keys].filter(([, s]) => s.held !== false).map(([key]) => key);
  }

  /** Whether a live caller (raw or handle) holds `wire`, or a raw `lock()` of it is coming. */
  claimed(wire: string): boolean {
    const state = this.#keys.get(wire);
    return state !== undefined && (state.raw || state.rawPending > 0 || state.claims.size > 0);
  }

  /** A raw command locked `wire` (`command("lock KEY")`): held for the raw API. */
  rawLocked(wire: string): void {
    const state = this.state(wire);
    this.hold(state, true);
    state.raw = true;
  }

  /**
   * Starts a lock request of `wire`; the ticket follows it to its end.
   *
   * @param wire the key as on the wire
   * @param claim the handle that will hold it, or `"raw"`
   */
  lock(wire: string, claim: Claim | "raw"): LockTicket {
    return new LockTicket(this, wire, claim);
  }

  /**
   * A handle stops holding `wire` (released by its owner). `"unlock"`: an
   * `unlock` must be sent, nothing else of this session holds it; `"kept"`:
   * another holder of the session still does; `"absent"`: it held nothing.
   */
  unclaim(wire: string, claim: Claim): "unlock" | "kept" | "absent" {
    const state = this.#keys.get(wire);
    if (state === undefined || !state.claims.delete(claim)) return "absent";
    if (state.raw || state.claims.size > 0) return "kept";
    if (state.held === false) return "absent";
    state.releasing = true;
    return "unlock";
  }

  /** An `unlock` of `wire` was answered (`null`: its reply was lost). */
  unlocked(wire: string, reply: Reply | null, error: () => SessionLostError): void {
    const state = this.#keys.get(wire);
    if (state === undefined) return;
    state.releasing = false;
    this.#loseClaims(state, error);
    this.hold(state, reply === null ? "maybe" : false);
    this.settle(wire);
  }

  /** `unlock_all` (or `quit`) was answered: nothing is held; the claims are told. */
  unlockedAll(error: SessionLostError): void {
    for (const [wire, state] of this.#keys) {
      this.#loseClaims(state, error);
      this.hold(state, false);
      this.settle(wire);
    }
  }

  /**
   * The session is gone (or can no longer be trusted): every claim is told,
   * and the ledger starts a new epoch knowing nothing held.
   *
   * @returns the keys that were held, as on the wire
   */
  lose(error: SessionLostError): string[] {
    const keys = this.keys();
    this.epoch++;
    for (const [wire, state] of this.#keys) {
      this.#loseClaims(state, error);
      this.hold(state, false);
      state.releasing = false;
      this.settle(wire);
    }
    return keys;
  }

  /** Sets what the server holds of a key, keeping count. @internal */
  hold(state: KeyState, held: boolean | "maybe"): void {
    if ((state.held === false) !== (held === false)) this.#held += held === false ? -1 : 1;
    state.held = held;
  }

  /** @internal */
  state(wire: string): KeyState {
    let state = this.#keys.get(wire);
    if (state === undefined) {
      state = {
        held: false,
        raw: false,
        claims: new Set(),
        pending: 0,
        rawPending: 0,
        releasing: false,
      };
      this.#keys.set(wire, state);
    }
    return state;
  }

  /** Releases `wire` if the session may hold it and nobody will: see the class doc. @internal */
  settle(wire: string): void {
    const state = this.#keys.get(wire);
    if (state === undefined) return;
    if (state.raw || state.claims.size > 0 || state.pending > 0 || state.releasing) return;
    if (state.held === false) {
      this.#keys.delete(wire);
      return;
    }
    state.releasing = true;
    const epoch = this.epoch;
    this.#release(wire, (reply) => {
      if (this.epoch !== epoch || this.#keys.get(wire) !== state) return;
      state.releasing = false;
      if (reply === null) return;
      if (reply.code === 200 || reply.code === 403) this.hold(state, false);
      this.settle(wire);
    });
  }

  #loseClaims(state: KeyState, error: SessionLostError | (() => SessionLostError)): void {
    state.raw = false;
    if (state.claims.size === 0) return;
    const reason = typeof error === "function" ? error() : error;
    for (const claim of state.claims) claim.lose(reason);
    state.claims.clear();
  }
}

/**
 * One lock request's life in the {@linkcode SessionLedger}: live from its
 * call until its caller sees the reply or gives up.
 */
export class LockTicket {
  readonly #ledger: SessionLedger;
  readonly #wire: string;
  readonly #claim: Claim | "raw";
  #live = true;
  #epoch: number;

  /** Made by {@linkcode SessionLedger.lock}. */
  constructor(ledger: SessionLedger, wire: string, claim: Claim | "raw") {
    this.#ledger = ledger;
    this.#wire = wire;
    this.#claim = claim;
    this.#epoch = ledger.epoch;
    const state = ledger.state(wire);
    state.pending++;
    if (claim === "raw") state.rawPending++;
  }

  /** Written on the wire (again, after a drop): the epoch it belongs to is now's. */
  sent(): void {
    this.#epoch = this.#ledger.epoch;
  }

  /**
   * Its caller gets `reply`: a 200 of this epoch makes the claim hold the key.
   *
   * @returns whether the caller may believe a grant (`false`: the session
   *   was lost since the request was sent)
   */
  replied(reply: Reply): boolean {
    const state = this.#ledger.state(this.#wire);
    this.#end(state);
    if (reply.code !== 200) {
      this.#ledger.settle(this.#wire);
      return true;
    }
    if (this.#epoch !== this.#ledger.epoch) {
      this.#ledger.hold(state, "maybe");
      this.#ledger.settle(this.#wire);
      return false;
    }
    this.#ledger.hold(state, true);
    if (this.#claim === "raw") state.raw = true;
    else state.claims.add(this.#claim);
    return true;
  }

  /** The caller gave up, or failed: no grant will be believed for it. */
  end(): void {
    const state = this.#ledger.state(this.#wire);
    this.#end(state);
    this.#ledger.settle(this.#wire);
  }

  /** A reply its caller did not see; `null`: lost with the connection, so it may be a grant. */
  unseen(reply: Reply | null): void {
    const state = this.#ledger.state(this.#wire);
    this.#end(state);
    if (this.#epoch === this.#ledger.epoch) {
      if (reply === null) this.#ledger.hold(state, state.held === true ? true : "maybe");
      else if (reply.code === 200) this.#ledger.hold(state, true);
    }
    this.#ledger.settle(this.#wire);
  }

  #end(state: KeyState): void {
    if (!this.#live) return;
    this.#live = false;
    state.pending--;
    if (this.#claim === "raw") state.rawPending--;
  }
}
