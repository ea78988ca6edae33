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
