/**
 * Errors of the eLock client. Every error a caller may want to catch is a
 * subclass of {@linkcode ELockError}; wrong arguments throw the built-in
 * `TypeError` or `RangeError` instead.
 *
 * Runtime-neutral: no runtime API in here.
 *
 * @example
 * ```ts
 * import { ELockError, LockUnavailableError } from "./errors.ts";
 *
 * const error: unknown = new LockUnavailableError("invoice-42");
 * if (error instanceof LockUnavailableError) {
 *   console.log(`someone else holds ${error.key}`);
 * } else if (error instanceof ELockError) {
 *   throw error;
 * }
 * ```
 *
 * @module
 */

/**
 * Options accepted by every error of this module.
 *
 * @example
 * ```ts
 * const error = new ELockError("lock failed: server gone", { cause: new Error("ECONNRESET") });
 * ```
 */
export interface ELockErrorOptions {
  /** The lower-level failure this error wraps. */
  cause?: unknown;
}

/**
 * What an {@linkcode InvalidKeyError} was about.
 *
 * @example
 * ```ts
 * const what: KeyKind = "value";
 * ```
 */
export type KeyKind = "key" | "value" | "session id";

/**
 * One edge of a deadlock cycle: `session` waits for `key`.
 *
 * @example
 * ```ts
 * const edge: DeadlockEdge = { session: "2", key: "d1" }; // session 2 waits for d1
 * ```
 */
export interface DeadlockEdge {
  /**
   * The session as the server names it, without the `#` before it: its id
   * on the reference servers, its public name on the bundled one
   * (`isSessionName(session, await client.sessionId())` tells your own).
   */
  readonly session: string;
  /** The key this session waits for, as the server wrote it. */
  readonly key: string;
}

/**
 * Base class of every error of the eLock client.
 *
 * @example
 * ```ts
 * try {
 *   throw new ELockError("lock failed: server gone");
 * } catch (error) {
 *   if (!(error instanceof ELockError)) throw error;
 * }
 * ```
 */
export class ELockError extends Error {
  /**
   * Creates the error.
   *
   * @param message what failed, details after a colon
   * @param options `cause`: the error this one wraps
   */
  constructor(message: string, options?: ELockErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ELockError";
  }
}

/**
 * The server refused a lock because the wait would close a cycle of waiters
 * (code 423, extended servers only). {@linkcode DeadlockError.cycle} is the
 * cycle parsed from the server's path; see {@linkcode parseDeadlockPath} for
 * how much to trust its keys.
 *
 * @example
 * ```ts
 * const error = new DeadlockError("Deadlock: #2 => d1 = #1 => d2 = #2");
 * error.path; // "#2 => d1 = #1 => d2 = #2"
 * error.cycle; // [{ session: "2", key: "d1" }, { session: "1", key: "d2" }]
 * ```
 */
export class DeadlockError extends ELockError {
  /** The path as the server sent it, without the `Deadlock:` prefix. */
  readonly path: string;
  /** The cycle of waiters; empty when the path could not be parsed. */
  readonly cycle: readonly DeadlockEdge[];

  /**
   * Creates the error from the server's message.
   *
   * @param serverMessage the reply text after `423 `, e.g. `Deadlock: #2 => d1 = #1 => d2 = #2`
   * @param options `cause`: the error this one wraps
   */
  constructor(serverMessage: string, options?: ELockErrorOptions) {
    super(serverMessage, options);
    this.name = "DeadlockError";
    this.path = stripDeadlockPrefix(serverMessage);
    this.cycle = parseDeadlockPath(this.path);
  }
}

/**
 * A lock was not granted: held by another session and not released within
 * the wait (code 409).
 *
 * @example
 * ```ts
 * const error = new LockUnavailableError("invoice-42", { reply: "409 Already locked by #7" });
 * error.message; // "Lock unavailable: invoice-42: 409 Already locked by #7"
 * new LockUnavailableError("invoice-42", { timeout: 0 }).message;
 * // "Lock unavailable: invoice-42 is held by another session (timeout 0: tried once; give a timeout in ms to wait)"
 * ```
 */
export class LockUnavailableError extends ELockError {
  /** The key that could not be locked, as the caller gave it. */
  readonly key: string;
  /** The server's reply line, or `null` when not known. */
  readonly reply: string | null;
  /** How long the request waited, in ms, or `null` when not known. */
  readonly timeout: number | null;

  /**
   * Creates the error.
   *
   * @param key the key that could not be locked
   * @param options `reply`: the server's reply line; `timeout`: the
   *   request's wait, in ms, when the key is held by another session;
   *   `cause`: the error this one wraps
   */
  constructor(key: string, options?: ELockErrorOptions & { reply?: string; timeout?: number }) {
    const reply = options?.reply ?? null;
    const timeout = options?.timeout ?? null;
    const held = timeout === null
      ? ""
      : ` is held by another session (${
        timeout === 0
          ? "timeout 0: tried once; give a timeout in ms to wait"
          : `still after ${timeout} ms`
      })`;
    super(
      `Lock unavailable: ${preview(key)}${held}${reply === null ? "" : `: ${reply}`}`,
      options,
    );
    this.name = "LockUnavailableError";
    this.key = key;
    this.reply = reply;
    this.timeout = timeout;
  }
}

/**
 * The server answered a command with a reply the client did not expect.
 *
 * @example
 * ```ts
 * const error = new UnexpectedResponseError("unlock k", "500 Internal server error");
 * error.message; // 'Unexpected response to "unlock k": 500 Internal server error'
 * ```
 */
export class UnexpectedResponseError extends ELockError {
  /** The command that was sent, without its line end. */
  readonly command: string;
  /** The reply line that came back. */
  readonly reply: string;

  /**
   * Creates the error.
   *
   * @param command what was attempted: the command line, without its line end
   * @param reply the reply line that came back
   * @param options `cause`: the error this one wraps
   */
  constructor(command: string, reply: string, options?: ELockErrorOptions) {
    super(`Unexpected response to "${preview(command)}": ${preview(reply)}`, options);
    this.name = "UnexpectedResponseError";
    this.command = command;
    this.reply = reply;
  }
}

/**
 * The connection to the server closed (or failed) before a reply was
 * complete, or was already closed.
 *
 * @example
 * ```ts
 * const error = new ConnectionClosedError("Connection closed: in the middle of a reply");
 * error.name; // "ConnectionClosedError"
 * ```
 */
export class ConnectionClosedError extends ELockError {
  /**
   * Creates the error.
   *
   * @param message what was going on, details after a colon
   * @param options `cause`: the transport error, if any
   */
  constructor(message = "Connection closed", options?: ELockErrorOptions) {
    super(message, options);
    this.name = "ConnectionClosedError";
  }
}

/**
 * A key, value or session id cannot be sent as one protocol word: it is
 * empty, contains a space, `\r` or `\n`, is not well-formed UTF-16, or is too
 * long. Thrown before anything is sent.
 *
 * @example
 * ```ts
 * const error = new InvalidKeyError("a b", "contains a space");
 * error.message; // 'Invalid key "a b": contains a space'
 * ```
 */
export class InvalidKeyError extends ELockError {
  /** The rejected string. */
  readonly key: string;
  /** Why it was rejected. */
  readonly reason: string;
  /** Whether it was a key, a value or a session id. */
  readonly what: KeyKind;

  /**
   * Creates the error.
   *
   * @param key the rejected string
   * @param reason why, e.g. `contains a space`
   * @param options `what`: key (default), value or session id; `cause`: the error this one wraps
   */
  constructor(
    key: string,
    reason: string,
    options?: ELockErrorOptions & { what?: KeyKind },
  ) {
    const what = options?.what ?? "key";
    super(`Invalid ${what} ${JSON.stringify(preview(key))}: ${reason}`, options);
    this.name = "InvalidKeyError";
    this.key = key;
    this.reason = reason;
    this.what = what;
  }
}

/**
 * The server does not know a command (an original eLock server answers
 * `400` to `lock_value` and `debug`): it needs an extended server.
 *
 * @example
 * ```ts
 * const error = new UnsupportedCommandError("debug", '400 Unknown command: "debug"');
 * error.command; // "debug"
 * ```
 */
export class UnsupportedCommandError extends ELockError {
  /** The command word the server did not know. */
  readonly command: string;
  /** The reply line that came back. */
  readonly reply: string;

  /**
   * Creates the error.
   *
   * @param command the command word, e.g. `lock_value`
   * @param reply the reply line that came back
   * @param options `cause`: the error this one wraps
   */
  constructor(command: string, reply: string, options?: ELockErrorOptions) {
    super(
      `Unsupported command "${preview(command)}": it needs an extended eLock server ` +
        `(the server answered ${preview(reply)})`,
      options,
    );
    this.name = "UnsupportedCommandError";
    this.command = command;
    this.reply = reply;
  }
}

/**
 * The server sent bytes that are not a valid reply: a line too long, a line
 * without a 3-digit code, or a malformed data line.
 *
 * @example
 * ```ts
 * const error = new ProtocolError('Invalid reply line: "hello"');
 * error.name; // "ProtocolError"
 * ```
 */
export class ProtocolError extends ELockError {
  /**
   * Creates the error.
   *
   * @param message what was wrong, details after a colon
   * @param options `cause`: the error this one wraps
   */
  constructor(message: string, options?: ELockErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
  }
}

/**
 * The session and every lock it held are gone: the connection dropped and
 * the session could not be resumed (the server refused, or the release
 * timeout passed first). Critical sections under those locks are no longer
 * protected. It is the reason of a lost {@linkcode HeldLock}'s `signal` and
 * the `error` of the client's `sessionlost` event.
 *
 * @example
 * ```ts
 * const error = new SessionLostError("7", ["invoice-42"], "the server refused to resume it");
 * error.keys; // ["invoice-42"]
 * ```
 */
export class SessionLostError extends ELockError {
  /** The id of the session that was lost (`""` when it was not known). */
  readonly sessionId: string;
  /** The keys the session held, as they were on the wire. */
  readonly keys: readonly string[];

  /**
   * Creates the error.
   *
   * @param sessionId the lost session's id
   * @param keys the keys it held, as on the wire
   * @param reason why it could not be resumed
   * @param options `cause`: the error this one wraps
   */
  constructor(
    sessionId: string,
    keys: readonly string[],
    reason: string,
    options?: ELockErrorOptions,
  ) {
    super(
      `Session ${sessionId === "" ? "(unknown)" : `#${sessionId}`} lost with ${keys.length} ` +
        `lock(s): ${reason}`,
      options,
    );
    this.name = "SessionLostError";
    this.sessionId = sessionId;
    this.keys = [...keys];
  }
}

/**
 * Parses a deadlock path `#C => e1 = #A => e2 = #B => e3 = #C` (session C
 * waits for e1, held by A, who waits for e2, ...) into its edges. The
 * `Deadlock:` prefix of the reply may be left on.
 *
 * The reference extended server repeats the first key for every edge
 * (`#2 => d1 = #1 => d1 = #2`): the keys are returned as written, without
 * assuming they are right. Session ids are returned without their `#`.
 *
 * @param text the path, with or without the `Deadlock:` prefix
 * @returns the edges in order; empty when the text is not a path (never throws)
 *
 * @example
 * ```ts
 * parseDeadlockPath("#3 => e1 = #1 => e2 = #2 => e3 = #3");
 * // [{ session: "3", key: "e1" }, { session: "1", key: "e2" }, { session: "2", key: "e3" }]
 * parseDeadlockPath("nonsense"); // []
 * ```
 */
export function parseDeadlockPath(text: string): DeadlockEdge[] {
  if (typeof text !== "string") return [];
  const words = stripDeadlockPrefix(text).split(" ").filter((w) => w !== "");
  // session ("=>" key "=" session)+
  if (words.length < 5 || (words.length - 1) % 4 !== 0) return [];
  const edges: DeadlockEdge[] = [];
  for (let i = 0; i + 4 < words.length; i += 4) {
    const session = sessionOf(words[i]!);
    const next = sessionOf(words[i + 4]!);
    if (session === null || next === null || words[i + 1] !== "=>" || words[i + 3] !== "=") {
      return [];
    }
    edges.push({ session, key: words[i + 2]! });
  }
  return edges;
}

function stripDeadlockPrefix(text: string): string {
  return text.replace(/^\s*Deadlock:\s*/, "").trim();
}

function sessionOf(word: string): string | null {
  return word.length > 1 && word.startsWith("#") ? word.slice(1) : null;
}

/** Shortens a string for an error message. */
function preview(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
