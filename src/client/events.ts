/**
 * The events of {@linkcode ELockClient}, a standard `EventTarget`, and
 * their types ({@linkcode ELockClientEventMap}).
 *
 * @module
 */

import type { ELockError, SessionLostError } from "../errors.ts";
import type { ELockClient } from "./client.ts";

/**
 * What {@linkcode ELockClient} dispatches, by name (see
 * {@linkcode ELockClientEventMap} for when each fires and what it carries).
 *
 * @example
 * ```ts
 * const type: ELockClientEventType = "sessionlost";
 * ```
 */
export type ELockClientEventType = keyof ELockClientEventMap;

/**
 * The events of {@linkcode ELockClient}, by name, as the DOM's
 * `WindowEventMap`: `client.addEventListener(name, listener)` gives the
 * listener the event of this map, with its fields typed, and a name that is
 * not here is a type error. Events come from every session of the client:
 * its own (`lock()`, `unlock()`, ...) and those of its pool (`acquire()`,
 * `withLock()`, `locks.request()`).
 *
 * - `connect`: a session opened a new connection to the server (not the
 *   first one, made by `connect()`).
 * - `disconnect`: a connection dropped without `close()` or `quit()`.
 * - `reconnect`: a reconnection attempt starts; fires once per attempt.
 * - `resume`: the session was resumed on a new connection, locks and all.
 * - `sessionlost`: the session and every lock it held are gone.
 * - `error`: a reconnection attempt failed, or a session gave up and closed.
 *
 * @example
 * ```ts ignore
 * client.addEventListener("sessionlost", (event) => {
 *   console.error(`lost ${event.keys.join(", ")} (session ${event.sessionId}):`, event.error);
 * });
 * client.addEventListener("reconnect", (event) => console.log(`attempt ${event.attempt}`));
 * ```
 */
export interface ELockClientEventMap {
  /**
   * A session of the client opened a new connection to the server: fires
   * for each reconnection attempt that reaches the server (before the
   * session is resumed on it), and when the client replaces a connection
   * on its own (after a wait given up, with no `disconnect` before it).
   * Not for the first connection of a session (`connect()` has not
   * returned yet, or the pool opens it when needed).
   */
  connect: ELockClientEvent & { readonly type: "connect" };
  /**
   * A connection of the client dropped without `close()` or `quit()`;
   * `error` says why. The client starts reconnecting (`reconnect` follows); with
   * reconnect off it is closed, and `sessionlost` follows.
   */
  disconnect: ELockClientEvent & { readonly type: "disconnect"; readonly error: ELockError };
  /**
   * A reconnection attempt starts: fires once per attempt, so several times
   * while the server stays unreachable; `attempt` counts from 1.
   */
  reconnect: ELockClientEvent & { readonly type: "reconnect"; readonly attempt: number };
  /**
   * The session was resumed on a new connection, with every lock it held;
   * `sessionId` is its id.
   */
  resume: ELockClientEvent & { readonly type: "resume"; readonly sessionId: string };
  /**
   * A session was lost (its lease ran out while its connection was down,
   * the server refused to resume it, or reconnect is off and its connection
   * dropped): every lock it held is gone. `keys` are those locks' keys, as on the wire;
   * `error` is the `SessionLostError` the handles of those locks got
   * (`HeldLock.signal.reason`); `sessionId` is the lost session's id (`""`
   * when it was never known). With reconnect on, the client carries on with
   * a new session.
   */
  sessionlost: ELockClientEvent & {
    readonly type: "sessionlost";
    readonly error: SessionLostError;
    readonly keys: readonly string[];
    readonly sessionId: string;
  };
  /**
   * A reconnection attempt failed (`error` is why, `attempt` its number), or
   * a session gave up reconnecting, its session lost, and closed (`error` is
   * the `ConnectionClosedError` its pending and later calls get, `attempt`
   * is `undefined`); when that is the client's own session, the client is
   * closed.
   */
  error: ELockClientEvent & { readonly type: "error"; readonly attempt: number | undefined };
}

/**
 * Details of an {@linkcode ELockClientEvent}.
 *
 * @example
 * ```ts
 * const init: ELockClientEventInit = { attempt: 2 };
 * ```
 */
export interface ELockClientEventInit {
  /** Why: the drop, the failed attempt, or a `SessionLostError`. */
  error?: unknown;
  /** The reconnection attempt, from 1. */
  attempt?: number;
  /** The session's id (`resume`, `sessionlost`). */
  sessionId?: string;
  /** The keys the lost session held, as on the wire (`sessionlost`). */
  keys?: readonly string[];
}

/**
 * An event of {@linkcode ELockClient}. A listener added with
 * `client.addEventListener(name, ...)` gets it typed by name (see
 * {@linkcode ELockClientEventMap}): no cast needed.
 *
 * @example
 * ```ts ignore
 * client.addEventListener("sessionlost", (event) => {
 *   console.error(`lost ${event.keys.join(", ")}:`, event.error.message);
 * });
 * ```
 */
export class ELockClientEvent extends Event {
  /** Why: the drop, the failed attempt, or a `SessionLostError`. */
  readonly error: unknown;
  /** The reconnection attempt, from 1 (`reconnect`, `error`). */
  readonly attempt: number | undefined;
  /** The session's id (`resume`, `sessionlost`). */
  readonly sessionId: string | undefined;
  /** The keys the lost session held, as on the wire (`sessionlost`). */
  readonly keys: readonly string[] | undefined;

  /**
   * Creates the event.
   *
   * @param type what happened
   * @param init its details
   */
  constructor(type: ELockClientEventType, init: ELockClientEventInit = {}) {
    super(type);
    this.error = init.error;
    this.attempt = init.attempt;
    this.sessionId = init.sessionId;
    this.keys = init.keys;
  }
}

/**
 * A listener of the {@linkcode ELockClient} event `K`: a function, or an
 * object with a `handleEvent` method, as `EventTarget` takes.
 *
 * @example
 * ```ts ignore
 * const onLost: ELockClientEventListener<"sessionlost"> = (event) => console.error(event.keys);
 * client.addEventListener("sessionlost", onLost);
 * ```
 */
export type ELockClientEventListener<K extends ELockClientEventType> =
  | ((this: ELockClient, event: ELockClientEventMap[K]) => void)
  | { handleEvent(event: ELockClientEventMap[K]): void };
