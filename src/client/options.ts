/**
 * Options of {@linkcode ELockClient}: how to connect, and how to lock.
 *
 * @module
 */

import type { Logger } from "../protocol/connection.ts";
import type { KeyEncoding } from "../protocol/commands.ts";
import type { TlsOptions, Transport } from "../transport/transport.ts";
import type { HeldLock } from "./held_lock.ts";

/**
 * Options of {@linkcode ELockClient.connect}. All durations are in ms.
 *
 * @example
 * ```ts
 * const options: ConnectOptions = {
 *   host: "127.0.0.1",
 *   port: 11400,
 *   releaseTimeout: 0,
 *   keyEncoding: "sha1",
 *   commandTimeout: 10_000,
 *   logger: console,
 * };
 * ```
 */
export interface ConnectOptions {
  /** Server host. Default `"127.0.0.1"`. */
  host?: string;
  /** Server port. Default 11400. */
  port?: number;
  /**
   * Several servers that act as one (bundled servers on one etcd cluster),
   * as `"host:port"` (`"[::1]:11400"` for IPv6; the port defaults to
   * `port`, else 11400), instead of `host`. `connect()` takes the first that
   * answers, in order. After a drop, the client reconnects to the next one
   * and resumes its session there (on servers that do not share sessions
   * the resume is refused, and the session's locks are reported lost).
   *
   * @example
   * ```ts ignore
   * await ELockClient.connect({ hosts: ["10.0.0.1:11400", "10.0.0.2:11400"] });
   * ```
   */
  hosts?: readonly string[];
  /**
   * How to open the TCP connection. Default: the runtime's own
   * ({@linkcode defaultTransport}); in a Worker, pass
   * `socketTransport(connect)` with `connect` from `cloudflare:sockets`.
   */
  transport?: Transport;
  /** Gives up connecting when aborted. */
  signal?: AbortSignal;
  /**
   * Speak TLS. `true` checks the server's certificate against the runtime's
   * default roots and `host`; an object can add trusted CAs (`caCerts`, PEM)
   * and name the certificate's expected name (`serverName`). Default: plain
   * TCP. A certificate that fails the check makes `connect()` reject with a
   * {@linkcode ConnectionClosedError} whose `cause` is the runtime's error.
   *
   * @example
   * ```ts ignore
   * const ca = await Deno.readTextFile("ca.pem");
   * await ELockClient.connect({ host: "elock.internal", tls: { caCerts: [ca] } });
   * ```
   */
  tls?: boolean | TlsOptions;
  /**
   * How long the session's locks outlive a dropped connection, in ms; sent as
   * `set_timeout` right after connecting. Default: the server's (30 s).
   */
  releaseTimeout?: number;
  /**
   * `"raw"` (default) sends keys and values as they are and rejects what is
   * not one protocol word; `"sha1"` sends their hex SHA-1, like the PHP
   * client, so any string works and PHP and TypeScript services lock the
   * same resources.
   */
  keyEncoding?: KeyEncoding;
  /**
   * How long to wait for any reply before the connection is declared dead,
   * in ms; a lock's wait is added to it. Default 30000. `Infinity`: never.
   */
  commandTimeout?: number;
  /** Gets a line per request and reply (`console` fits). */
  logger?: Logger;
  /**
   * A name for this client's sessions, shown by the bundled server's `debug`
   * (and `elock debug`) beside each session's address: 1-64 printable ASCII
   * characters without spaces, else `connect()` throws a `TypeError` before
   * anything is sent. Sent as `name NAME` (an extension of the bundled
   * server) after connecting and after every reconnect or resume; other
   * servers refuse the command, which is ignored. Default: none.
   */
  name?: string;
  /** Longest reply line accepted, in bytes. Default 1 MiB. */
  maxLineLength?: number;
  /**
   * Whether to reconnect and resume the session (`conn_id ID`) when the
   * connection drops without {@linkcode ELockClient.close} or `quit`, so
   * that the session's locks stay held. Default: on, unless
   * `releaseTimeout` is 0 (the locks are gone the moment the connection
   * drops). `true` or an object turns it on; `false` off. With it on,
   * `connect()` also asks the session id (`conn_id`) right away.
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * While the session holds a lock and the connection is idle, the client
   * sends a cheap command (`conn_id`) every this many ms, and counts the
   * connection dead when its reply does not come within as long. So a
   * connection that died silently (no reset reached the client) is found
   * while a lock is held, and the lock is resumed or reported lost
   * (`HeldLock.signal`). Default: a third of the release timeout,
   * between 0.1 s and 10 s (10 s with the server's default or with 0).
   * `false`: never. The replies also keep the lease: a lock whose session
   * got no reply for the release timeout (less a margin) is reported lost,
   * because the server may have released it; so with `false`, or a
   * heartbeat longer than that, a lock held idle is reported lost.
   */
  heartbeat?: number | false;
  /**
   * How many sessions (connections) {@linkcode ELockClient.acquire},
   * {@linkcode ELockClient.withLock} and `locks.request` may use at once.
   * Each unit of work (a wait, then the hold) leases one session, so a
   * request waiting for one key never holds back a request for another;
   * when all are leased, further requests wait for one. The first is the
   * client's own session (the one `lock()`, `unlock()` and `sessionId()`
   * use); the others are opened when first needed. Default 4.
   */
  poolSize?: number;
}

/**
 * How {@linkcode ConnectOptions.reconnect} paces its attempts: the first
 * comes at once, then each waits twice as long as the one before (from
 * `initialDelay` up to `maxDelay`), less a random part of up to half, so
 * that clients dropped together do not come back together.
 *
 * @example
 * ```ts
 * const reconnect: ReconnectOptions = { initialDelay: 100, maxDelay: 5000 };
 * ```
 */
export interface ReconnectOptions {
  /** The wait before the second attempt, in ms. Default 50. */
  initialDelay?: number;
  /** The longest wait between attempts, in ms. Default 2000. */
  maxDelay?: number;
}

/**
 * Options of {@linkcode ELockClient.lock} and {@linkcode ELockClient.lockValue}.
 *
 * @example
 * ```ts
 * const options: LockOptions = { timeout: 5000, signal: AbortSignal.timeout(2000) };
 * ```
 */
export interface LockOptions {
  /**
   * Waiting: `lock()`, `lockValue()`, `acquire()` and `withLock()` do not wait
   * unless given a `timeout` (in ms; `Infinity` waits until granted), while
   * `locks.request()` and `elock lock` wait until granted unless given
   * `ifAvailable` or `--timeout`.
   *
   * How long to wait for a lock held by another session, in ms. Default 0:
   * try once. `Infinity`: wait until granted (or aborted). The server counts
   * in whole seconds; the client keeps the exact deadline (counted from the
   * call, time queued and the round trip included) and releases a lock
   * granted after it.
   */
  timeout?: number;
  /** Cancels the wait: the call rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Options of {@linkcode ELockClient.acquire} and {@linkcode ELockClient.withLock}.
 *
 * @example
 * ```ts
 * const options: AcquireOptions = { timeout: 5000, value: "read" };
 * ```
 */
export interface AcquireOptions extends LockOptions {
  /** Takes a value lock (`lock_value`, extended servers) instead of an exclusive one. */
  value?: string;
  /**
   * A lock this one nests in: it is taken on the same session as `within`
   * (not leased from the pool), so the extended server's deadlock detection
   * sees both, and it must be released before `within` is. Default: none.
   */
  within?: HeldLock;
  /**
   * Also asks the grant's fencing token (`fence KEY`, an extension of the
   * bundled server) into {@linkcode HeldLock.token}. Other servers do not
   * know the command: the lock is then released and the call rejects with
   * `UnsupportedCommandError`. Default `false`.
   */
  fence?: boolean;
}

/** Default server host. */
export const DEFAULT_HOST = "127.0.0.1";

/** The release timeout of a session that did not set one (the servers' default), in ms. */
export const DEFAULT_RELEASE_TIMEOUT = 30_000;

/** Default {@linkcode ConnectOptions.poolSize}. */
export const DEFAULT_POOL_SIZE = 4;

/** Default command timeout, in ms. */
export const DEFAULT_COMMAND_TIMEOUT = 30_000;
