/**
 * Keeps one session alive and truthful: reconnects and resumes it after a
 * drop, beats while it holds locks, and counts its lease from the last
 * reply: once the release timeout (less a margin) has passed without a
 * reply, the server may have released the session, so its holders are told
 * at once, whether or not a drop was seen, and a resume after that is not
 * believed.
 *
 * @module
 */

import { ConnectionClosedError, type ELockError, UnexpectedResponseError } from "../errors.ts";
import {
  connIdCommand,
  nameCommand,
  setTimeoutCommand,
  unlockAllCommand,
} from "../protocol/commands.ts";
import type { Connection } from "../protocol/connection.ts";
import type { ELockClientEventInit, ELockClientEventType } from "./events.ts";
import type { SessionLedger } from "./ledger.ts";
import { DEFAULT_RELEASE_TIMEOUT, type ReconnectOptions } from "./options.ts";
import {
  backoff,
  endpointOf,
  endpointText,
  failOver,
  openConnection,
  type Settings,
  sleep,
  unexpected,
} from "./settings.ts";

/** What a {@linkcode Supervisor} needs of its session. */
export interface SupervisedSession {
  readonly settings: Settings;
  readonly connection: Connection;
  readonly ledger: SessionLedger;
  id: string | null;
  releaseTimeout: number | undefined;
  /** The client name sent on each new connection, if any. */
  readonly name?: string | undefined;
  lastReplyAt: number;
  /** The index, in the settings' endpoints, of the server the connection is to. */
  endpoint: number;
  dispatch(type: ELockClientEventType, init?: ELockClientEventInit): void;
  lose(reason: string): void;
}

/**
 * The margin taken off the release timeout for the lease: the server counts
 * from when it noticed the connection end, which is after its last reply
 * was written; the margin covers that reply's trip and timer slack.
 */
export function leaseMargin(releaseTimeout: number): number {
  return Math.min(1000, Math.ceil(releaseTimeout / 10));
}

/** See the module doc. */
export class Supervisor {
  readonly #session: SupervisedSession;
  #started = false;
  #stopped = false;
  /** The lease ran out (or the session was refused): the next connection starts a new session. */
  #expired = false;
  /** {@linkcode Supervisor.renew} left the connection: its drop is no disconnect to report. */
  #renewing = false;
  readonly #stop = new AbortController();
  #fresh: Connection | null = null;
  #heartbeat: ReturnType<typeof setTimeout> | undefined;
  #leaseTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(session: SupervisedSession) {
    this.#session = session;
  }

  /** The session is connected: from now on drops are reconnected, and the heartbeat runs. */
  start(): void {
    this.#started = true;
    this.#scheduleHeartbeat();
  }

  /** Stops everything: no reconnection, no timers; a connection being set up is closed. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#heartbeat);
    clearTimeout(this.#leaseTimer);
    this.#stop.abort(new ConnectionClosedError("Connection closed: by the client"));
    void this.#fresh?.close();
  }

  /**
   * Frees a connection held by a wait whose caller gave up, when the session
   * holds nothing (and was never granted a lock by an original-dialect
   * server: see {@linkcode SessionLedger.grantedOriginal}): the session goes on as a new one on a new connection at
   * once, and the old connection waits out the server's answer to the wait
   * on its own, then ends the old session with `set_timeout 0` (freeing a
   * late grant) and closes ({@linkcode Connection.leaveWait}).
   *
   * @returns whether it was done
   */
  renew(): boolean {
    const { connection, ledger, settings } = this.#session;
    if (
      !this.#started || this.#stopped || settings.reconnect === null || ledger.holding ||
      ledger.grantedOriginal
    ) {
      return false;
    }
    return connection.leaveWait(setTimeoutCommand(0), () => {
      // A grant on the old connection is nobody's: not believed here; the old connection frees
      // it. Set before the drop, which leaveWait() reports at once: no disconnect, no resume.
      ledger.epoch++;
      this.#renewing = true;
      this.#expired = true;
      this.#session.id = null;
    });
  }

  /** Whether the lease has run out since the last connection was set up. */
  get expired(): boolean {
    return this.#expired;
  }

  /** The lease, in ms: how long after a reply the session is surely still held; `null`: none. */
  lease(): number | null {
    const releaseTimeout = this.#session.releaseTimeout ?? DEFAULT_RELEASE_TIMEOUT;
    if (releaseTimeout === 0) return null;
    return releaseTimeout - leaseMargin(releaseTimeout);
  }

  /** The longest wait to ask the server for at once: shorter than the lease while locks are held. */
  longestWait(): number {
    const lease = this.lease();
    if (lease === null || !this.#session.ledger.holding) return Infinity;
    return Math.max(1000, Math.floor(lease / 2000) * 1000);
  }

  /** A lock is held (or the connection is down): make sure the lease is watched. */
  watchLease(): void {
    if (this.#leaseTimer === undefined && !this.#stopped) this.#armLease();
  }

  #armLease(): void {
    const lease = this.lease();
    if (lease === null) return;
    const wait = Math.max(0, this.#session.lastReplyAt + lease - Date.now());
    this.#leaseTimer = setTimeout(() => {
      this.#leaseTimer = undefined;
      this.#checkLease();
    }, Math.min(wait, 2 ** 31 - 1));
  }

  #checkLease(): void {
    const lease = this.lease();
    const { connection, ledger } = this.#session;
    if (this.#stopped || lease === null || connection.failure !== null) return;
    const down = connection.down !== null;
    if (!down && !ledger.holding) return;
    if (this.#expired || Date.now() < this.#session.lastReplyAt + lease) {
      if (!this.#expired) this.#armLease();
      return;
    }
    this.#expire(
      `no reply for ${lease} ms (the release timeout less a margin): the server may have released it`,
    );
    // Up, yet silent: whatever the server still holds for the session is freed, before any later
    // call. The session goes on in a new epoch, with a lease of its own.
    if (!down) {
      this.#expired = false;
      connection.request(unlockAllCommand(), { urgent: true, retry: true }).catch(() => {});
    }
  }

  /** The session is lost: holders told, and the next connection starts a new session. */
  #expire(reason: string): void {
    if (this.#expired) return;
    this.#expired = true;
    this.#session.lose(reason);
    if (this.#session.connection.down !== null) this.#session.id = null;
  }

  /** The connection dropped: reconnect (keeping the calls), or let it fail. */
  onDrop(error: ELockError): boolean {
    const pacing = this.#session.settings.reconnect;
    if (!this.#started || this.#stopped) return false;
    if (!this.#renewing) this.#session.dispatch("disconnect", { error });
    // A server that does not speak eLock is not reconnected to.
    if (pacing === null || !(error instanceof ConnectionClosedError)) {
      this.stop();
      this.#session.lose(`the connection dropped (${error.message})`);
      return false;
    }
    this.#session.settings.logger?.debug(`elock: ${error.message}; reconnecting`);
    // With several servers, the next one is tried first; not when the client left the
    // connection itself (renew): the server is fine, and moving would split the clients.
    if (!this.#renewing) failOver(this.#session.settings, this.#session.endpoint);
    // With no release timeout the server released everything when it saw the drop: nothing to resume.
    if (this.lease() === null) {
      this.#expire("the connection dropped, and the release timeout is 0");
    }
    if (this.#expired) this.#session.id = null;
    this.watchLease();
    void this.#reconnect(error, pacing);
    return true;
  }

  #scheduleHeartbeat(): void {
    const every = this.#session.settings.heartbeat;
    if (every === null || this.#stopped) return;
    this.#heartbeat = setTimeout(() => {
      const { connection, ledger, settings } = this.#session;
      if (connection.failure !== null || this.#stopped) return;
      if (ledger.holding && connection.idle) {
        // An unanswered beat drops the connection: then it is resumed, or the locks reported lost.
        connection.request(connIdCommand(), {
          replyTimeout: Math.min(every, settings.commandTimeout),
        }).catch(() => {});
      }
      this.#scheduleHeartbeat();
    }, every);
  }

  /**
   * Opens connections until one is up, resuming the session on it unless
   * its lease ran out. Gives up, closing the connection, once the session
   * is lost and no connection could be made for the longer of the release
   * and command timeouts.
   */
  async #reconnect(drop: ConnectionClosedError, pacing: Required<ReconnectOptions>): Promise<void> {
    const session = this.#session;
    const { connection, settings } = session;
    const droppedAt = Date.now();
    const releaseTimeout = session.releaseTimeout ?? DEFAULT_RELEASE_TIMEOUT;
    if (session.id === null && !this.#expired) this.#expire("its id was not known");
    const giveUpAt = droppedAt + Math.max(releaseTimeout, settings.commandTimeout);
    // The server must have seen the old connection end before a refusal to resume means anything.
    await connection.dropped;
    let lastError: unknown = drop;
    for (let attempt = 1;; attempt++) {
      if (connection.failure !== null || this.#stopped) return;
      if (attempt > 1) {
        if (this.#expired && Date.now() >= giveUpAt) {
          const error = new ConnectionClosedError(
            `Connection closed: cannot reconnect to ${
              settings.endpoints.map(endpointText).join(", ")
            }`,
            { cause: lastError },
          );
          session.dispatch("error", { error });
          this.stop();
          connection.fail(error);
          return;
        }
        await sleep(backoff(attempt, pacing), this.#stop.signal);
        if (connection.failure !== null || this.#stopped) return;
      }
      if (!this.#renewing || attempt > 1) session.dispatch("reconnect", { attempt });
      try {
        const outcome = await this.#reopen();
        if (outcome === "busy") {
          lastError = new UnexpectedResponseError(`conn_id ${session.id}`, "403 (still active)");
          continue;
        }
        if (outcome === "resumed") session.dispatch("resume", { sessionId: session.id ?? "" });
        return;
      } catch (error) {
        lastError = error;
        if (connection.failure !== null || this.#stopped) return;
        settings.logger?.debug(`elock: reconnection attempt ${attempt} failed: ${error}`);
        session.dispatch("error", { error, attempt });
      }
    }
  }

  /**
   * Opens a connection, resumes the session on it (or starts a new one once
   * the lease ran out), sets the release timeout again and adopts it.
   * `"busy"`: the server says the session is still connected (nothing
   * adopted); `"resumed"`: the session goes on; `"new"`: a new session.
   */
  async #reopen(): Promise<"resumed" | "new" | "busy"> {
    const session = this.#session;
    const fresh = await openConnection(session.settings, this.#stop.signal, undefined, undefined);
    this.#fresh = fresh;
    try {
      session.dispatch("connect");
      const id = this.#expired ? null : session.id;
      const epoch = session.ledger.epoch;
      const timeout = session.releaseTimeout;
      // Pipelined: `conn_id ID` must come first, then the new connection's settings.
      const name = session.name;
      const [resumed, set, current] = await Promise.all([
        id === null ? null : fresh.request(connIdCommand(id)),
        timeout === undefined ? null : fresh.request(setTimeoutCommand(timeout)),
        fresh.request(connIdCommand()),
        // After the resume: the name goes with the session (other servers refuse it, harmlessly).
        name === undefined ? null : fresh.request(nameCommand(name)),
      ]);
      if (set !== null && set.code !== 200) throw unexpected(`set_timeout ${timeout}`, set);
      if (current.code !== 200 || current.message === "") throw unexpected("conn_id", current);
      let outcome: "resumed" | "new" = id === null ? "new" : "resumed";
      if (resumed !== null && resumed.code !== 200) {
        // The extended server says why. The original one does not: once it has seen the old
        // connection end (awaited before the first attempt), a refusal means the session is gone.
        if (/still active/i.test(resumed.message)) {
          await fresh.close();
          return "busy";
        }
        outcome = "new";
        this.#expire("the server refused to resume it");
      } else if (resumed !== null && (this.#expired || session.ledger.epoch !== epoch)) {
        // Resumed after its holders were told the locks were lost: free them now.
        const all = await fresh.request(unlockAllCommand());
        if (all.code !== 200) throw unexpected("unlock_all", all);
        outcome = "new";
      }
      if (session.connection.failure !== null || this.#stopped) {
        await fresh.close();
        return outcome;
      }
      // A new session holds nothing of the old one: whoever believes otherwise is told now.
      if (outcome === "new" && session.ledger.holding) {
        session.lose("a new session replaced it after the drop");
      }
      session.id = current.message;
      session.endpoint = endpointOf(fresh);
      session.lastReplyAt = Date.now();
      this.#expired = false;
      this.#renewing = false;
      session.connection.adopt(fresh);
      return outcome;
    } catch (error) {
      await fresh.close();
      throw error;
    } finally {
      this.#fresh = null;
    }
  }
}
