/**
 * The events of {@linkcode ELockClient}, a standard `EventTarget`.
 *
 * @module
 */

/**
 * What {@linkcode ELockClient} dispatches:
 *
 * - `connect`: a TCP connection to the server opened (also for each
 *   reconnection).
 * - `disconnect`: the connection dropped without `close()` or `quit()`;
 *   `error` says why. The client starts reconnecting; with reconnect off it
 *   is closed, and `sessionlost` follows.
 * - `reconnect`: a reconnection attempt starts; `attempt` counts from 1.
 * - `resume`: the session was resumed on a new connection, with every lock
 *   it held; `sessionId` is its id.
 * - `sessionlost`: the session could not be resumed (or, with reconnect
 *   off, its connection dropped): every lock it held is
 *   gone (`keys`, as on the wire) and `error` is a
 *   `SessionLostError`. With reconnect on, the client carries on with a
 *   new session.
 * - `error`: a reconnection attempt failed (`error`), or the client gave up
 *   and closed.
 *
 * @example
 * ```ts
 * const type: ELockClientEventType = "sessionlost";
 * ```
 */
export type ELockClientEventType =
  | "connect"
  | "disconnect"
  | "reconnect"
  | "resume"
  | "sessionlost"
  | "error";

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
 * An event of {@linkcode ELockClient}; see {@linkcode ELockClientEventType}.
 *
 * @example
 * ```ts ignore
 * client.addEventListener("sessionlost", (event) => {
 *   const { keys, error } = event as ELockClientEvent;
 *   console.error(`lost ${keys?.join(", ")}:`, error);
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
