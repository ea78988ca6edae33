/**
 * One eLock session of a client: its connection, its
 * {@linkcode SessionLedger}, and the {@linkcode Supervisor} that keeps it
 * (reconnect, resume, lease, heartbeat).
 *
 * @module
 */

import {
  DeadlockError,
  type ELockError,
  SessionLostError,
  UnsupportedCommandError,
} from "../errors.ts";
import {
  connIdCommand,
  lockCommand,
  lockValueCommand,
  MAX_WAIT_SECONDS,
  nameCommand,
  setTimeoutCommand,
  unlockAllCommand,
  unlockCommand,
} from "../protocol/commands.ts";
import { type Connection, DeadlineError, type RequestOptions } from "../protocol/connection.ts";
import { type Reply, replyLine } from "../protocol/reply_reader.ts";
import type { ELockClientEventInit, ELockClientEventType } from "./events.ts";
import { type Claim, type LockTicket, SessionLedger } from "./ledger.ts";
import { endpointOf, openConnection, type Settings, unexpected } from "./settings.ts";
import { Supervisor } from "./supervisor.ts";

const MAX_WAIT_MS = MAX_WAIT_SECONDS * 1000;

/** Receives a session's events. */
export type Dispatch = (type: ELockClientEventType, init?: ELockClientEventInit) => void;

/** What {@linkcode Session.lock} got: a grant, a refusal, or the deadline passed. */
export type LockOutcome = "granted" | "refused" | "deadline";

/**
 * A session: every call on it goes through its one {@linkcode Connection}
 * (replaced on reconnect), and everything it holds through its ledger.
 */
export class Session {
  readonly settings: Settings;
  readonly connection: Connection;
  readonly ledger: SessionLedger;
  readonly supervisor: Supervisor;
  readonly dispatch: Dispatch;
  /** The session's id, when known (`null` after it was lost, until the next is known). */
  id: string | null = null;
  /** The release timeout set on it, or `undefined` for the server's default. */
  releaseTimeout: number | undefined;
  /** The client name sent on each of its connections (`name NAME`), or `undefined`. */
  name: string | undefined;
  /**
   * Whether the session's id was handed out (`sessionId()`, `resume()`): it
   * is then never renewed after a given-up wait (see {@linkcode Supervisor.renew}).
   */
  pinned = false;
  /** When the last reply came (`Date.now()` ms): the server saw the session alive then. */
  lastReplyAt = Date.now();
  /** The index, in the settings' endpoints, of the server the connection is to. */
  endpoint: number;

  private constructor(settings: Settings, connection: Connection, dispatch: Dispatch) {
    this.settings = settings;
    this.endpoint = endpointOf(connection);
    this.connection = connection;
    this.dispatch = dispatch;
    this.ledger = new SessionLedger((wire, done) => this.#releaseUnseen(wire, done));
    this.supervisor = new Supervisor(this);
  }

  /**
   * Opens a session: connects, then sets the release timeout and asks the
   * session id (with reconnect on), pipelined.
   */
  static async open(
    settings: Settings,
    options: {
      releaseTimeout: number | undefined;
      signal: AbortSignal | undefined;
      name?: string | undefined;
    },
    dispatch: Dispatch,
  ): Promise<Session> {
    let session: Session | null = null;
    const connection = await openConnection(
      settings,
      options.signal,
      (error: ELockError) => session !== null && session.supervisor.onDrop(error),
      () => {
        if (session !== null) session.lastReplyAt = Date.now();
      },
    );
    session = new Session(settings, connection, dispatch);
    session.name = options.name;
    try {
      await Promise.all([
        options.releaseTimeout === undefined
          ? null
          : session.setReleaseTimeout(options.releaseTimeout, options.signal),
        settings.reconnect === null ? null : session.sessionId(),
        options.name === undefined
          ? null
          // Other servers refuse the extension (400 or 500): the name is then simply not shown.
          : session.request(nameCommand(options.name), { signal: options.signal, retry: true }),
      ]);
    } catch (error) {
      await connection.close();
      throw error;
    }
    session.supervisor.start();
    return session;
  }

  /** Whether the session's connection is closed for good. */
  get closed(): boolean {
    return this.connection.failure !== null;
  }

  /** Sends a command on the session's connection. */
  request(bytes: Uint8Array | Promise<Uint8Array>, options?: RequestOptions): Promise<Reply> {
    return this.connection.request(bytes, options);
  }

  /** `set_timeout`: kept for the next connections, and for the lease. */
  async setReleaseTimeout(ms: number, signal?: AbortSignal): Promise<void> {
    const reply = await this.request(setTimeoutCommand(ms), { signal, retry: true });
    if (reply.code !== 200) throw unexpected(`set_timeout ${ms}`, reply);
    this.releaseTimeout = ms;
  }

  /** `conn_id`: the session's id (asked once). */
  async sessionId(): Promise<string> {
    if (this.id !== null) return this.id;
    const reply = await this.request(connIdCommand(), { retry: true });
    if (reply.code !== 200 || reply.message === "") throw unexpected("conn_id", reply);
    this.id = reply.message;
    return reply.message;
  }

  /**
   * Sends `lock`/`lock_value` of the encoded key (and value) until granted,
   * refused past the timeout, or the deadline passes. A grant counts for
   * `claim` (a handle, or `"raw"` for {@linkcode ELockClient.lock}).
   *
   * @throws {SessionLostError} granted, but the session was lost since it was sent
   */
  async lock(
    wireKey: string | Promise<string>,
    wireValue: string | null | Promise<string | null>,
    options: { timeout: number; signal?: AbortSignal | undefined },
    claim: Claim | "raw",
  ): Promise<{ outcome: LockOutcome; reply: Reply | null }> {
    const { timeout, signal } = options;
    const endAt = Date.now() + timeout;
    // Encoded keys come as promises: the request is queued now all the same, to keep call order.
    let key = typeof wireKey === "string" ? wireKey : null;
    let value = wireValue instanceof Promise ? null : wireValue;
    let known = key !== null && !(wireValue instanceof Promise);
    for (;;) {
      const left = Math.max(0, endAt - Date.now());
      // While the session holds locks, a long wait is asked in parts, so replies keep the lease.
      const waitMs = left === 0 ? 0 : Math.min(left, MAX_WAIT_MS, this.supervisor.longestWait());
      const attempt = new LockAttempt(
        this.ledger,
        claim,
        waitMs,
        signal,
        timeout === 0 || !Number.isFinite(timeout) ? undefined : left,
      );
      let reply: Reply;
      try {
        reply = await this.request(
          known
            ? attempt.build(key!, value)
            : Promise.all([wireKey, wireValue]).then(([k, v]) => attempt.build(k, v)),
          attempt,
        );
      } catch (error) {
        attempt.end();
        if (error instanceof DeadlineError) return { outcome: "deadline", reply: null };
        // A handle's wait given up: its connection is freed at once, if the session holds nothing.
        if (signal?.aborted && error === signal.reason && claim !== "raw" && !this.pinned) {
          this.supervisor.renew();
        }
        throw error;
      }
      key = attempt.key;
      value = attempt.value;
      const believed = attempt.believed;
      known = true;
      if (reply.code === 200) {
        if (!believed) {
          throw new SessionLostError(this.id ?? "", [key!], "lost while the lock was asked for");
        }
        this.supervisor.watchLease();
        return { outcome: "granted", reply };
      }
      if (reply.code === 409) {
        if (Date.now() < endAt) continue;
        return { outcome: "refused", reply };
      }
      if (reply.code === 423) throw new DeadlockError(reply.message);
      if (reply.code === 400 && value !== null) {
        throw new UnsupportedCommandError("lock_value", replyLine(reply));
      }
      const sent = value === null
        ? lockCommand(key!, waitMs)
        : lockValueCommand(key!, value, waitMs);
      throw unexpected(new TextDecoder().decode(sent).trimEnd(), reply);
    }
  }

  /**
   * Sends `unlock` of the encoded key; the ledger learns its outcome in wire
   * order (a reply lost with the connection is sent again, but not once the
   * session it was meant for is lost: it could free a lock of the next).
   *
   * @returns the reply (`null`: not sent, its session was lost), and whether
   *   it was sent again after a drop
   */
  unlock(
    wireKey: string | Promise<string>,
  ): Promise<{ reply: Reply | null; retried: boolean }> {
    const attempt = new UnlockAttempt(this, typeof wireKey === "string" ? wireKey : "");
    return this.request(
      typeof wireKey === "string" ? unlockCommand(wireKey) : wireKey.then((w) => attempt.build(w)),
      attempt,
    ).then((reply) => attempt.done(reply), (error) => attempt.failed(error));
  }

  /**
   * Releases what a handle (`claim`) holds of `wire`: unlocks unless another
   * holder shares it. `false` when the session was lost meanwhile.
   */
  async release(wire: string, claim: Claim): Promise<boolean> {
    const outcome = this.ledger.unclaim(wire, claim);
    if (outcome !== "unlock") return outcome === "kept";
    const sameEpoch = this.#sameEpoch();
    const { reply, retried } = await this.unlock(wire);
    if (reply === null || !sameEpoch()) return false;
    return reply.code === 200 || (reply.code === 403 && retried);
  }

  /** `unlock_all`: nothing is held afterwards; handles of the session are told. */
  async unlockAll(urgent = false): Promise<Reply> {
    return await this.request(unlockAllCommand(), {
      retry: true,
      urgent,
      onReply: (r) => {
        if (r.code === 200) {
          this.ledger.unlockedAll(
            new SessionLostError(this.id ?? "", [], "unlockAll() released every lock"),
          );
        }
      },
    });
  }

  /**
   * The session is lost: its handles are told, `sessionlost` is dispatched.
   * The session carries on under a new epoch.
   */
  lose(reason: string): void {
    const id = this.id ?? "";
    const error = new SessionLostError(id, this.ledger.keys(), reason);
    this.settings.logger?.debug(`elock: ${error.message}`);
    const keys = this.ledger.lose(error);
    this.dispatch("sessionlost", { error, keys, sessionId: id });
  }

  /**
   * Closes the connection (and stops the supervisor). The session's handles
   * are lost: nothing will keep or release their locks now (the server
   * releases them after the release timeout).
   */
  async close(message?: string): Promise<void> {
    this.supervisor.stop();
    if (this.ledger.holding) {
      this.ledger.lose(
        new SessionLostError(this.id ?? "", this.ledger.keys(), "the client was closed"),
      );
    }
    await this.connection.close(message);
  }

  /** Releases a lock nobody claims (granted after its caller gave up, or lost with a reply). */
  #releaseUnseen(wire: string, done: (reply: Reply | null) => void): void {
    if (this.closed) return done(null);
    this.settings.logger?.debug(
      `elock: releasing ${wire}, granted after its caller gave up (or lost with a reply)`,
    );
    const sameEpoch = this.#sameEpoch();
    const send = (): void =>
      void this.request(unlockCommand(wire), {
        urgent: true,
        retry: true,
        sendable: sameEpoch,
        onReply: done,
      })
        // Overdue (a command timeout): sent again on the next connection, unless that is too late.
        .catch(() => (this.closed || !sameEpoch() ? done(null) : send()));
    send();
  }

  /** Whether the session is still in the epoch of now: an unlock is not sent into a later one. */
  #sameEpoch(): () => boolean {
    const epoch = this.ledger.epoch;
    return () => this.ledger.epoch === epoch;
  }
}

/** One `lock` request of {@linkcode Session.lock}: its options and hooks, and its ticket. */
class LockAttempt implements RequestOptions {
  readonly retry = true;
  readonly barrier: boolean;
  readonly waitMs: number;
  readonly signal: AbortSignal | undefined;
  readonly deadline: number | undefined;
  /** A handle's wait may be left on its connection when given up; a raw `lock()` keeps it. */
  readonly leavable: boolean;
  readonly #ledger: SessionLedger;
  readonly #claim: Claim | "raw";
  #ticket: LockTicket | null = null;
  #over = false;
  key: string | null = null;
  value: string | null = null;
  /** Whether the caller may believe a grant: `false`, the session was lost since it was sent. */
  believed = true;

  constructor(
    ledger: SessionLedger,
    claim: Claim | "raw",
    waitMs: number,
    signal: AbortSignal | undefined,
    deadline: number | undefined,
  ) {
    this.#ledger = ledger;
    this.#claim = claim;
    this.leavable = claim !== "raw";
    this.waitMs = waitMs;
    this.barrier = waitMs > 0;
    this.signal = signal;
    this.deadline = deadline;
  }

  /** The command line; the ticket starts now (call order is wire order). */
  build(key: string, value: string | null): Uint8Array {
    const bytes = value === null
      ? lockCommand(key, this.waitMs)
      : lockValueCommand(key, value, this.waitMs);
    this.key = key;
    this.value = value;
    this.#ticket = this.#ledger.lock(key, this.#claim);
    if (this.#over) this.#ticket.end();
    return bytes;
  }

  /** The caller is done with it (gave up, or failed). */
  end(): void {
    this.#over = true;
    this.#ticket?.end();
  }

  onSend(): void {
    this.#ticket?.sent();
  }

  onReply(reply: Reply): void {
    this.#ledger.noteGrant(reply);
    this.believed = this.#ticket?.replied(reply) ?? true;
  }

  onGiveUp(): void {
    this.end();
  }

  onUnseenReply(reply: Reply | null): void {
    this.#ledger.noteGrant(reply);
    this.#ticket?.unseen(reply);
  }
}

/** One `unlock` request of {@linkcode Session.unlock}: its options and hooks. */
class UnlockAttempt implements RequestOptions {
  readonly retry = true;
  readonly #session: Session;
  readonly #epoch: number;
  #wire: string;
  #retried = false;
  #stale = false;

  constructor(session: Session, wire: string) {
    this.#session = session;
    this.#epoch = session.ledger.epoch;
    this.#wire = wire;
  }

  build(wire: string): Uint8Array {
    this.#wire = wire;
    return unlockCommand(wire);
  }

  done(reply: Reply): { reply: Reply | null; retried: boolean } {
    return { reply, retried: this.#retried };
  }

  failed(error: unknown): { reply: Reply | null; retried: boolean } {
    if (this.#stale) return { reply: null, retried: this.#retried };
    throw error;
  }

  onRetry(): void {
    this.#retried = true;
  }

  sendable(): boolean {
    // Not into a later epoch: it could free a lock of the next session.
    return this.#session.ledger.epoch === this.#epoch || !(this.#stale = true);
  }

  onReply(reply: Reply): void {
    this.#session.ledger.unlocked(this.#wire, reply, () => this.#lost());
  }

  onUnseenReply(): void {
    this.#session.ledger.unlocked(this.#wire, null, () => this.#lost());
  }

  #lost(): SessionLostError {
    return new SessionLostError(this.#session.id ?? "", [this.#wire], "unlock() released it");
  }
}
