/**
 * Encodes keys and builds the command lines of the eLock protocol.
 *
 * Every builder returns the exact bytes to send (UTF-8, ended by `\n`) and
 * checks each argument is one protocol word, so no string can inject a
 * command. Runtime-neutral: only `TextEncoder` and `crypto.subtle`.
 *
 * @example
 * ```ts
 * import { encodeKey, lockCommand } from "./commands.ts";
 *
 * const key = await encodeKey("invoice 42", "sha1");
 * lockCommand(key, 1500); // bytes of "lock 796dbca6fcb793a1632c9465b46a468ecde5b8a6 2\n"
 * ```
 *
 * @module
 */

import { InvalidKeyError, type KeyKind } from "../errors.ts";
import {
  isClientName,
  MAX_CLIENT_NAME_LENGTH,
  MAX_TIMEOUT_MS,
  MAX_WAIT_SECONDS,
} from "./limits.ts";

/**
 * How keys and values go on the wire: `"raw"` sends them as they are (and
 * rejects what is not one word); `"sha1"` sends their lower-case hex SHA-1,
 * like the PHP client, so any string is allowed.
 *
 * @example
 * ```ts
 * const encoding: KeyEncoding = "sha1"; // keys go on the wire as their hex SHA-1
 * ```
 */
export type KeyEncoding = "raw" | "sha1";

/** Longest raw key, value or session id, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

export { MAX_TIMEOUT_MS, MAX_WAIT_SECONDS } from "./limits.ts";

const encoder = new TextEncoder();
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Turns a key or value into the word sent on the wire.
 *
 * @param key the caller's key or value
 * @param encoding `"raw"` or `"sha1"`
 * @param what whether it is a key or a value, for the error message
 * @returns the word to send
 * @throws {InvalidKeyError} with `"raw"`: the string is empty, contains a
 *   space, `\r` or `\n`, has a lone surrogate, or is longer than
 *   {@linkcode MAX_KEY_BYTES} UTF-8 bytes
 * @throws {TypeError} the key is not a string or the encoding is unknown
 *
 * @example
 * ```ts
 * await encodeKey("orders/7", "raw"); // "orders/7"
 * await encodeKey("abc", "sha1"); // "a9993e364706816aba3e25717850c26c9cd0d89d"
 * ```
 */
export async function encodeKey(
  key: string,
  encoding: KeyEncoding,
  what: "key" | "value" = "key",
): Promise<string> {
  if (typeof key !== "string") throw new TypeError(`The ${what} must be a string: ${typeof key}`);
  if (encoding === "raw") {
    checkWord(key, what);
    return key;
  }
  if (encoding === "sha1") return await sha1Hex(key);
  throw new TypeError(`Unknown key encoding: ${String(encoding)}`);
}

/**
 * Checks that a string can be sent as one protocol word.
 *
 * @param word the string to check
 * @param what what it is, for the error message
 * @throws {InvalidKeyError} it is empty, contains a space, `\r` or `\n`, has a
 *   lone surrogate, or is longer than {@linkcode MAX_KEY_BYTES} UTF-8 bytes
 *
 * @example
 * ```ts
 * checkWord("orders/7", "key"); // fine
 * checkWord("a b", "key"); // throws InvalidKeyError
 * ```
 */
export function checkWord(word: string, what: KeyKind): void {
  // A key whose lock line was built was checked then.
  if (LOCK_LINES.has(word) || UNLOCK_LINES.has(word)) return;
  if (typeof word !== "string") throw new TypeError(`The ${what} must be a string: ${typeof word}`);
  let reason: string | null = null;
  if (word === "") reason = "is empty";
  else if (word.includes(" ")) reason = "contains a space";
  else if (word.includes("\r")) reason = "contains \\r";
  else if (word.includes("\n")) reason = "contains \\n";
  else if (LONE_SURROGATE.test(word)) reason = "is not well-formed Unicode (lone surrogate)";
  else if (isTooLong(word)) {
    reason = `is longer than ${MAX_KEY_BYTES} UTF-8 bytes`;
  }
  if (reason !== null) throw new InvalidKeyError(word, reason, { what });
}

/**
 * `lock KEY` (no wait) or `lock KEY SECONDS`.
 *
 * @param key the encoded key
 * @param waitMs how long to wait, in ms: sent as whole seconds rounded up, at
 *   most {@linkcode MAX_WAIT_SECONDS}; 0 or omitted sends the one-word form
 * @returns the command line's bytes
 * @throws {InvalidKeyError} the key is not one word
 * @throws {RangeError} the wait is negative or not a number
 *
 * @example
 * ```ts
 * lockCommand("k"); // "lock k\n"
 * lockCommand("k", 1001); // "lock k 2\n"
 * ```
 */
export function lockCommand(key: string, waitMs?: number): Uint8Array {
  if (waitMs === undefined || waitMs === 0) return cachedLine(LOCK_LINES, "lock", key);
  checkWord(key, "key");
  return line(["lock", key, ...waitWords(waitMs)]);
}

/**
 * `lock_value KEY VALUE [SECONDS]` (extended servers only).
 *
 * @param key the encoded key
 * @param value the encoded value
 * @param waitMs as for {@linkcode lockCommand}
 * @returns the command line's bytes
 * @throws {InvalidKeyError} the key or value is not one word
 * @throws {RangeError} the wait is negative or not a number
 *
 * @example
 * ```ts
 * lockValueCommand("k", "red", 5000); // "lock_value k red 5\n"
 * ```
 */
export function lockValueCommand(key: string, value: string, waitMs?: number): Uint8Array {
  checkWord(key, "key");
  checkWord(value, "value");
  return line(["lock_value", key, value, ...waitWords(waitMs)]);
}

/**
 * `unlock KEY`.
 *
 * @param key the encoded key
 * @returns the command line's bytes
 * @throws {InvalidKeyError} the key is not one word
 *
 * @example
 * ```ts
 * unlockCommand("k"); // "unlock k\n"
 * ```
 */
export function unlockCommand(key: string): Uint8Array {
  return cachedLine(UNLOCK_LINES, "unlock", key);
}

/**
 * The lines of `lock KEY` and `unlock KEY` of the keys used last: a client
 * that locks and unlocks the same keys builds each line once. Shared, never
 * written to: a line's bytes are only read by the transports.
 */
const LOCK_LINES = new Map<string, Uint8Array>();
const UNLOCK_LINES = new Map<string, Uint8Array>();
const LINE_CACHE_SIZE = 1024;

function cachedLine(cache: Map<string, Uint8Array>, command: string, key: string): Uint8Array {
  const hit = typeof key === "string" ? cache.get(key) : undefined;
  if (hit !== undefined) return hit;
  checkWord(key, "key");
  const bytes = line([command, key]);
  if (cache.size >= LINE_CACHE_SIZE) cache.clear();
  cache.set(key, bytes);
  return bytes;
}

/**
 * `fence KEY`: the fencing token of a key the session holds (an extension
 * of the bundled server; other servers answer 400 or 500).
 *
 * @param key the encoded key
 * @returns the command line's bytes
 * @throws {InvalidKeyError} the key is not one word
 *
 * @example
 * ```ts
 * fenceCommand("k"); // "fence k\n"
 * ```
 */
export function fenceCommand(key: string): Uint8Array {
  checkWord(key, "key");
  return line(["fence", key]);
}

/**
 * `unlock_all`.
 *
 * @returns the command line's bytes
 *
 * @example
 * ```ts
 * unlockAllCommand(); // "unlock_all\n"
 * ```
 */
export function unlockAllCommand(): Uint8Array {
  return line(["unlock_all"]);
}

/**
 * `conn_id` (ask for this session's id) or `conn_id ID` (resume session ID).
 *
 * @param id the session to resume, if any
 * @returns the command line's bytes
 * @throws {InvalidKeyError} the id is not one word
 *
 * @example
 * ```ts
 * connIdCommand(); // "conn_id\n"
 * connIdCommand("42"); // "conn_id 42\n"
 * ```
 */
export function connIdCommand(id?: string): Uint8Array {
  if (id === undefined) return line(["conn_id"]);
  checkWord(id, "session id");
  return line(["conn_id", id]);
}

/**
 * `set_timeout MS`: how long the session's locks outlive a disconnect.
 *
 * @param ms whole milliseconds, 0 to {@linkcode MAX_TIMEOUT_MS}
 * @returns the command line's bytes
 * @throws {RangeError} `ms` is not a whole number in range
 *
 * @example
 * ```ts
 * setTimeoutCommand(30_000); // "set_timeout 30000\n"
 * ```
 */
export function setTimeoutCommand(ms: number): Uint8Array {
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_TIMEOUT_MS) {
    throw new RangeError(`Invalid timeout: ${String(ms)} is not a whole 0..${MAX_TIMEOUT_MS} ms`);
  }
  return line(["set_timeout", String(ms)]);
}

/**
 * `name TEXT` (an extension of the bundled server): names the session, for
 * `debug`. Other servers refuse it (`400 Unknown command` or `500`), which
 * is harmless.
 *
 * @param name the client name ({@linkcode isClientName})
 * @returns the command line's bytes
 * @throws {TypeError} `name` is not 1-64 printable ASCII characters without spaces
 *
 * @example
 * ```ts
 * nameCommand("billing-worker"); // "name billing-worker\n"
 * ```
 */
export function nameCommand(name: string): Uint8Array {
  if (!isClientName(name)) {
    throw new TypeError(
      `Invalid name: ${JSON.stringify(String(name)).slice(0, 80)} ` +
        `(expected 1-${MAX_CLIENT_NAME_LENGTH} printable ASCII characters without spaces)`,
    );
  }
  return line(["name", name]);
}

/**
 * `force_unlock KEY` (an extension of the bundled server, `--admin` only):
 * frees KEY whoever holds it.
 *
 * @param key the key, as it is on the wire
 * @returns the command line's bytes
 * @throws {InvalidKeyError} `key` is not one protocol word
 *
 * @example
 * ```ts
 * forceUnlockCommand("nightly-report"); // "force_unlock nightly-report\n"
 * ```
 */
export function forceUnlockCommand(key: string): Uint8Array {
  checkWord(key, "key");
  return line(["force_unlock", key]);
}

/**
 * `stats`.
 *
 * @returns the command line's bytes
 *
 * @example
 * ```ts
 * statsCommand(); // "stats\n"
 * ```
 */
export function statsCommand(): Uint8Array {
  return line(["stats"]);
}

/**
 * `debug` (extended servers only).
 *
 * @returns the command line's bytes
 *
 * @example
 * ```ts
 * debugCommand(); // "debug\n"
 * ```
 */
export function debugCommand(): Uint8Array {
  return line(["debug"]);
}

/**
 * `quit`.
 *
 * @returns the command line's bytes
 *
 * @example
 * ```ts
 * quitCommand(); // "quit\n"
 * ```
 */
export function quitCommand(): Uint8Array {
  return line(["quit"]);
}

/**
 * Any command line, sent as given plus `\n`. It must be one line.
 *
 * @param text the command line, without its line end
 * @returns the command line's bytes
 * @throws {TypeError} the text is empty or contains `\r` or `\n`
 *
 * @example
 * ```ts
 * rawCommand("lock k 5"); // "lock k 5\n"
 * ```
 */
export function rawCommand(text: string): Uint8Array {
  if (typeof text !== "string") throw new TypeError(`A command must be a string: ${typeof text}`);
  if (text === "") throw new TypeError("Invalid command: empty");
  if (/[\r\n]/.test(text)) throw new TypeError("Invalid command: contains \\r or \\n");
  return encoder.encode(`${text}\n`);
}

function waitWords(waitMs: number | undefined): string[] {
  if (waitMs === undefined) return [];
  if (typeof waitMs !== "number" || Number.isNaN(waitMs) || waitMs < 0) {
    throw new RangeError(`Invalid wait: ${String(waitMs)} ms`);
  }
  if (waitMs === 0) return [];
  return [String(Math.min(Math.ceil(waitMs / 1000), MAX_WAIT_SECONDS))];
}

/** Whether `text` has more than MAX_KEY_BYTES UTF-8 bytes. */
function isTooLong(text: string): boolean {
  // A UTF-16 unit takes 1 to 3 UTF-8 bytes: encode only when in doubt.
  if (text.length * 3 <= MAX_KEY_BYTES) return false;
  if (text.length > MAX_KEY_BYTES) return true;
  return encoder.encode(text).length > MAX_KEY_BYTES;
}

function line(words: string[]): Uint8Array {
  const text = `${words.join(" ")}\n`;
  // An ASCII line (the usual command) is copied byte by byte: several times
  // cheaper than encode() on Node and Deno, as cheap on Bun.
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) return encoder.encode(text);
    bytes[i] = code;
  }
  return bytes;
}

async function sha1Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", encoder.encode(text)));
  let hex = "";
  for (const byte of digest) hex += byte.toString(16).padStart(2, "0");
  return hex;
}
