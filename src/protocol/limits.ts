/**
 * Numeric limits of the eLock protocol, shared by the client and the
 * bundled server.
 *
 * @module
 */

/**
 * Longest wait the servers honour, in whole seconds (PROTOCOL.md defect 11:
 * beyond this a timer's 2^31 ms limit is passed).
 */
export const MAX_WAIT_SECONDS = 2_147_483;

/** Largest `set_timeout` value, in milliseconds. */
export const MAX_TIMEOUT_MS = 2_147_483_647;

/**
 * The port eLock servers listen on by default.
 *
 * @example
 * ```ts
 * const address = `127.0.0.1:${DEFAULT_PORT}`; // "127.0.0.1:11400"
 * ```
 */
export const DEFAULT_PORT = 11400;

/**
 * Longest client name (`name` command), in characters.
 *
 * @example
 * ```ts
 * const fits = "worker-7".length <= MAX_CLIENT_NAME_LENGTH; // true
 * ```
 */
export const MAX_CLIENT_NAME_LENGTH = 64;

/**
 * Whether `name` is a valid client name: 1 to {@linkcode MAX_CLIENT_NAME_LENGTH}
 * printable ASCII characters without spaces (`!` to `~`), so one protocol word
 * that any terminal shows as it is.
 *
 * @param name the name to check
 * @returns `true` when it can be sent with the `name` command
 *
 * @example
 * ```ts
 * isClientName("billing-worker@host7"); // true
 * isClientName("two words"); // false
 * ```
 */
export function isClientName(name: string): boolean {
  return typeof name === "string" && /^[\x21-\x7e]{1,64}$/.test(name);
}
