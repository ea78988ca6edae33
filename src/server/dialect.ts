/**
 * The reply texts of the two eLock dialects.
 *
 * @module
 */

import type { LockResult, ResumeResult, UnlockResult } from "./lock_table.ts";

/**
 * Which eLock server to behave like.
 *
 * @example
 * ```ts
 * const dialect: Dialect = "original"; // speak like the Erlang server
 * ```
 */
export type Dialect = "original" | "extended";

/** How a dialect words its replies. Each reply is one line without its end. */
export interface DialectReplies {
  readonly eol: string;
  readonly hasValueLocks: boolean;
  readonly hasDebug: boolean;
  /** `quit` closes the connection (original) or only unlocks (extended). */
  readonly quitCloses: boolean;
  /** `conn_id ID` is accepted only as the first command of a connection. */
  readonly resumeFirstOnly: boolean;
  lock(result: LockResult): string;
  unlock(result: UnlockResult): string;
  resume(result: ResumeResult): string;
  /**
   * `fence KEY` (this server's extension): `200 TOKEN` for a key the
   * session holds, else a 403.
   */
  fence(token: number | null): string;
  readonly unlockAll: string;
  readonly setTimeout: string;
  readonly quit: string;
  /** Unknown command or wrong arity; `word` is the command word. */
  unknown(word: string): string;
  /** A number that is not a whole number in range. */
  badNumber(text: string): string;
  readonly lineTooLong: string;
}

const holders = (ids: readonly string[]): string => ids.map((id) => `#${id}`).join(", ");

/** The message of a lock refused by an operator limit (after the dialect's error code). */
function limitText(what: "held" | "waiters", limit: number): string {
  return what === "held"
    ? `Too many keys held by this session (limit ${limit})`
    : `Too many waiters for this key (limit ${limit})`;
}

/**
 * The extended dialect's answer to a lock during the grace period after
 * start (no key is granted yet, and no wait was asked for).
 */
const GRACE_REPLY = "409 Not granted during the grace period after start";

/** Replies of the Erlang eLock server (lines end in `\r\n`). */
export const ORIGINAL: DialectReplies = {
  eol: "\r\n",
  hasValueLocks: false,
  hasDebug: false,
  quitCloses: true,
  resumeFirstOnly: true,
  lock: (r) =>
    r.kind === "acquired"
      ? "200 Acquired"
      : r.kind === "limit"
      ? `400 ${limitText(r.what, r.limit)}`
      : "409 Unavailable",
  unlock: (r) =>
    r.kind === "released"
      ? "200 Unlocked"
      : r.kind === "not_locked"
      ? "403 not_locked"
      : "403 not_yours",
  resume: (r) => r === "resumed" || r === "same" ? "200 conn id set" : "403 cannot set conn id",
  fence: (token) => token === null ? "403 not_locked" : `200 ${token}`,
  unlockAll: "200 OK",
  setTimeout: "200 timeout set",
  quit: "200 Hey, it was nice seeing you.",
  unknown: (word) => `400 Unknown command: "${word}"`,
  badNumber: (text) => `400 Invalid number: "${text}"`,
  lineTooLong: "400 Line too long",
};

const RESUME_REFUSED: Record<Exclude<ResumeResult, "resumed" | "same">, string> = {
  holds_locks: "403 Can not resume connection - current connection already acquired locks",
  unknown: "403 Can not resume connection - it is already disposed",
  active: "403 Can not resume connection - it is still active",
};

/** Replies of the Node.js eLock server (lines end in `\n`). */
export const EXTENDED: DialectReplies = {
  eol: "\n",
  hasValueLocks: true,
  hasDebug: true,
  quitCloses: false,
  resumeFirstOnly: false,
  lock: (r) => {
    switch (r.kind) {
      case "acquired":
        return "200 Lock acquired";
      case "unavailable":
        return `409 Already locked by ${holders(r.holders)}${
          r.value === null ? "" : ` (${r.value})`
        }`;
      case "deadlock":
        return `423 Deadlock: ${r.path}`;
      case "conflict":
        return "500 Internal server error";
      case "grace":
        return GRACE_REPLY;
      case "limit":
        return `500 ${limitText(r.what, r.limit)}`;
    }
  },
  unlock: (r) =>
    r.kind === "not_yours" ? `403 Locked by ${holders(r.holders)}` : "200 Lock released",
  resume: (r) => r === "resumed" || r === "same" ? "200 Resumed" : RESUME_REFUSED[r],
  fence: (token) => token === null ? "403 Not locked by this session" : `200 ${token}`,
  unlockAll: "200 OK",
  setTimeout: "200 OK",
  quit: "200 OK",
  unknown: () => "500 Internal server error",
  badNumber: () => "500 Internal server error",
  lineTooLong: "500 Line too long",
};

/** The replies of `dialect`. */
export function dialectReplies(dialect: Dialect): DialectReplies {
  return dialect === "original" ? ORIGINAL : EXTENDED;
}
