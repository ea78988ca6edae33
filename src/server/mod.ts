/**
 * The bundled eLock server: both dialects (`original` and `extended`), on
 * Node, Deno and Bun, with the reference servers' defects fixed.
 *
 * ```ts
 * import { startServer } from "@x/elock/server";
 *
 * await using server = await startServer({ port: 0, dialect: "original" });
 * console.log(`eLock listening on ${server.hostname}:${server.port}`);
 * ```
 *
 * @module
 */

import {
  refuseConnection,
  serveConnection,
  type ServerConnection,
  type ServerCounters,
  type ServerEvent,
} from "./connection.ts";
import { type Dialect, dialectReplies } from "./dialect.ts";
import type { Listen, ServerTlsOptions } from "./listener.ts";
import { runtimeListen } from "./runtime_listen.ts";
import { LockTable } from "./lock_table.ts";
import { EtcdStore } from "./etcd/store.ts";
import type { LockStore } from "./store.ts";
import { DEFAULT_PORT, MAX_TIMEOUT_MS } from "../protocol/limits.ts";

export type { Dialect } from "./dialect.ts";
export type { RawServerSocket, ServerConnection, ServerEvent } from "./connection.ts";
export type { Listen, Listener, ListenOptions, ServerTlsOptions } from "./listener.ts";

export { DEFAULT_MAX_HELD_KEYS, DEFAULT_MAX_WAITERS_PER_KEY } from "./lock_table.ts";
export { isSessionName, sessionName } from "../protocol/session_name.ts";

/** The port eLock servers listen on by default: 11400. */
export { DEFAULT_PORT };

/**
 * Longest command line accepted by default, in bytes.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_LINE_LENGTH, startServer } from "@x/elock/server";
 *
 * await using server = await startServer({ port: 0, maxLineLength: 4 * DEFAULT_MAX_LINE_LENGTH });
 * ```
 */
export const DEFAULT_MAX_LINE_LENGTH = 65_536;

/**
 * Most client connections open at once by default; one more is answered
 * with an error line and closed.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_CONNECTIONS, startServer } from "@x/elock/server";
 *
 * await using server = await startServer({ port: 0, maxConnections: DEFAULT_MAX_CONNECTIONS / 2 });
 * ```
 */
export const DEFAULT_MAX_CONNECTIONS = 20_000;

/**
 * Longest reply built by default, in bytes (a `debug` of a big table, a 409
 * listing many holders); a longer one is answered with an error line.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_REPLY_BYTES, startServer } from "@x/elock/server";
 *
 * await using server = await startServer({ port: 0, maxReplyBytes: 4 * DEFAULT_MAX_REPLY_BYTES });
 * ```
 */
export const DEFAULT_MAX_REPLY_BYTES = 4 << 20;

/**
 * Idle time before the first TCP keepalive probe on an accepted socket, in
 * ms, by default: a client host that vanished is noticed (and its session's
 * release timeout starts) this long after it last sent anything, plus the
 * unanswered probes (on Bun 10 a second apart; on Node and Deno the
 * system's count and interval, on Linux 9 × 75 s).
 *
 * @example
 * ```ts
 * import { DEFAULT_KEEPALIVE_MS, startServer } from "@x/elock/server";
 *
 * await using server = await startServer({ port: 0, keepAlive: DEFAULT_KEEPALIVE_MS / 2 });
 * ```
 */
export const DEFAULT_KEEPALIVE_MS = 60_000;

/**
 * Options of {@linkcode startServer}.
 *
 * @example
 * ```ts
 * const options: ServerOptions = { hostname: "127.0.0.1", port: 0, dialect: "original" };
 * ```
 */
export interface ServerOptions {
  /** Address to bind (default `127.0.0.1`). */
  hostname?: string;
  /** Port to bind (default 11400); 0 picks a free port. */
  port?: number;
  /** Which server to behave like (default `extended`). */
  dialect?: Dialect;
  /**
   * Hand out session ids 1, 2, 3... (guessable, for tests) instead of random
   * ones; replies then print them as they are, as the reference servers do,
   * instead of the public names of random ids.
   */
  sequentialIds?: boolean;
  /** Longest command line, in bytes (default 65536). */
  maxLineLength?: number;
  /**
   * Most client connections open at once (default 20000); one more is sent
   * an error line (`500 Too many connections`, original dialect `400 ...`)
   * and closed, and counted in `stats` (`STAT refused_connections N`, shown
   * once N > 0).
   */
  maxConnections?: number;
  /**
   * Longest reply, in bytes (default 4 MiB, at least 1024): a `debug`, or a
   * 409 or 403 listing its holders, that would be longer is answered
   * `500 Reply too large` instead of being built.
   */
  maxReplyBytes?: number;
  /**
   * Closes a connection that has sent nothing for this many ms, unless a
   * lock of its waits; its session then follows the disconnect rule.
   * Default 0: idle connections stay open, since holding a lock while idle
   * is what a lock client does; TCP keepalive (see `keepAlive`) notices a
   * client host that has vanished.
   */
  idleTimeout?: number;
  /**
   * TCP keepalive on accepted sockets: ms of idleness before the first
   * probe (default 60000); 0 turns keepalive off.
   */
  keepAlive?: number;
  /** Release timeout of new sessions, in ms (default 30000). */
  defaultReleaseTimeout?: number;
  /**
   * Keys one session may hold at once (default 100,000). A lock beyond it is
   * answered `500 Too many keys held by this session (limit N)` (original
   * dialect: `400 ...`).
   */
  maxHeldKeys?: number;
  /**
   * Requests that may wait for one key at once (default 100,000). A wait
   * beyond it is answered `500 Too many waiters for this key (limit N)`
   * (original dialect: `400 ...`). A session waits for one key at a time.
   */
  maxWaitersPerKey?: number;
  /**
   * Grace period after start, in ms (default 0: off), like Chubby's
   * lock-delay: no key is granted for that long, so that a restarted server
   * cannot hand a key to a new client before the lease of the holder it
   * forgot has run out. Waits queue and are granted in order when it ends; a
   * lock without a wait is refused (`409`).
   */
  graceMs?: number;
  /**
   * Where the lock table lives (default `memory`): `memory`, in this
   * process; `etcd`, in an etcd cluster (`etcdEndpoints`), so that any
   * number of servers on it behave as one server, and a session resumes on
   * any of them. With `etcd`, a command etcd does not answer (no quorum) is
   * answered `500 Lock store unavailable` (original dialect `400 ...`) and
   * nothing is granted; `sequentialIds` and `graceMs` are not supported.
   */
  store?: "memory" | "etcd";
  /**
   * Client URLs of the etcd members (`http://host:port`), for `store: "etcd"`.
   *
   * @example
   * ```ts ignore
   * await startServer({ store: "etcd", etcdEndpoints: ["http://127.0.0.1:2379"] });
   * ```
   */
  etcdEndpoints?: readonly string[];
  /** Key prefix of the table in etcd (default `elock/`): servers that share it share a table. */
  etcdPrefix?: string;
  /** Called for each connection event (and each command, with `verbose`). */
  onEvent?: (event: ServerEvent) => void;
  /** Report every command to `onEvent`, not only connection events. */
  verbose?: boolean;
  /**
   * Accept the operator command `force_unlock KEY` (this server's extension:
   * frees KEY whoever holds it, and its next waiter gets it; each one is
   * reported to `onEvent` as a `force_unlock` event). Default `false`: it is
   * answered `403 Forbidden: force_unlock needs a server started with --admin`.
   * Anyone who can connect can then use it: bind to a trusted network.
   */
  admin?: boolean;
  /** The listener to use; by default the one of the current runtime. */
  listen?: Listen;
  /**
   * Serve TLS only, with this certificate and key (PEM); default: plain TCP.
   * Clients then connect with the `tls` option.
   *
   * @example
   * ```ts ignore
   * import { readFile } from "node:fs/promises";
   *
   * await startServer({
   *   tls: { cert: await readFile("cert.pem", "utf8"), key: await readFile("key.pem", "utf8") },
   * });
   * ```
   */
  tls?: ServerTlsOptions;
}

/**
 * A running eLock server.
 *
 * @example
 * ```ts
 * const server = await startServer({ port: 0 });
 * try {
 *   console.log(server.port);
 * } finally {
 *   await server.close();
 * }
 * ```
 */
export interface ELockServer extends AsyncDisposable {
  /** Address the server is bound to. */
  readonly hostname: string;
  /** Port the server is bound to. */
  readonly port: number;
  /** The dialect it speaks. */
  readonly dialect: Dialect;
  /** Number of open client connections. */
  readonly connections: number;
  /** Stops listening, closes every connection, and clears all lock state. */
  close(): Promise<void>;
}

/** The names of {@linkcode ServerOptions} (every one: the type says so). */
const SERVER_OPTIONS: readonly string[] = Object.keys(
  {
    hostname: true,
    port: true,
    dialect: true,
    sequentialIds: true,
    maxLineLength: true,
    maxConnections: true,
    maxReplyBytes: true,
    idleTimeout: true,
    keepAlive: true,
    defaultReleaseTimeout: true,
    maxHeldKeys: true,
    maxWaitersPerKey: true,
    graceMs: true,
    store: true,
    etcdEndpoints: true,
    etcdPrefix: true,
    onEvent: true,
    verbose: true,
    listen: true,
    tls: true,
    admin: true,
  } satisfies { [K in keyof ServerOptions]-?: true },
);

/**
 * Starts an eLock server and resolves once it is listening.
 *
 * @param options where to listen and how to behave
 * @returns the running server; close it with `close()` or `await using`
 * @throws {Error} when the address cannot be bound (e.g. `EADDRINUSE`)
 * @throws {RangeError} when an option is out of range
 * @throws {TypeError} when `tls` is not PEM `cert` and `key` strings
 *
 * @example Start on a free port, talk to it, stop
 * ```ts
 * import { startServer } from "@x/elock/server";
 *
 * await using server = await startServer({ port: 0, dialect: "extended" });
 * console.log(`listening on port ${server.port}`);
 * ```
 */
export async function startServer(options: ServerOptions = {}): Promise<ELockServer> {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(
      `startServer(): options must be an object, got ${
        options === null ? "null" : Array.isArray(options) ? "an array" : typeof options
      }` + (typeof options === "number" ? `; pass { port: ${options} }` : ""),
    );
  }
  for (const name of Object.keys(options)) {
    if (!SERVER_OPTIONS.includes(name)) {
      throw new TypeError(
        `startServer(): unknown option ${JSON.stringify(name)}; the options are: ${
          SERVER_OPTIONS.join(", ")
        }`,
      );
    }
  }
  const dialect = options.dialect ?? "extended";
  if (dialect !== "original" && dialect !== "extended") {
    throw new RangeError(`Unknown dialect: "${dialect}" (expected "original" or "extended")`);
  }
  const port = options.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`Invalid port: ${port}`);
  }
  const maxLineLength = options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH;
  if (!Number.isInteger(maxLineLength) || maxLineLength < 16) {
    throw new RangeError(`Invalid maxLineLength: ${maxLineLength} (at least 16)`);
  }
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) {
    throw new RangeError(`Invalid maxConnections: ${maxConnections} (at least 1)`);
  }
  const maxReplyBytes = options.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES;
  if (!Number.isInteger(maxReplyBytes) || maxReplyBytes < 1024) {
    throw new RangeError(`Invalid maxReplyBytes: ${maxReplyBytes} (at least 1024)`);
  }
  const idleTimeoutMs = options.idleTimeout ?? 0;
  if (!Number.isInteger(idleTimeoutMs) || idleTimeoutMs < 0 || idleTimeoutMs > MAX_TIMEOUT_MS) {
    throw new RangeError(`Invalid idleTimeout: ${idleTimeoutMs} (ms, 0 for none)`);
  }
  const keepAlive = options.keepAlive ?? DEFAULT_KEEPALIVE_MS;
  if (!Number.isInteger(keepAlive) || keepAlive < 0 || keepAlive > MAX_TIMEOUT_MS) {
    throw new RangeError(`Invalid keepAlive: ${keepAlive} (ms, 0 for off)`);
  }
  const tls = options.tls;
  if (
    tls !== undefined &&
    (typeof tls !== "object" || tls === null || typeof tls.cert !== "string" ||
      typeof tls.key !== "string" || !tls.cert.includes("-----BEGIN") ||
      !tls.key.includes("-----BEGIN"))
  ) {
    throw new TypeError("Invalid tls option: expected { cert, key } as PEM strings");
  }
  const storeKind = options.store ?? "memory";
  if (storeKind !== "memory" && storeKind !== "etcd") {
    throw new RangeError(`Unknown store: "${storeKind}" (expected "memory" or "etcd")`);
  }
  if (storeKind === "etcd") {
    if (options.etcdEndpoints === undefined || options.etcdEndpoints.length === 0) {
      throw new RangeError('store "etcd" needs etcdEndpoints (http://host:port, ...)');
    }
    if (options.sequentialIds === true) {
      throw new RangeError('sequentialIds is not supported with store "etcd"');
    }
    if ((options.graceMs ?? 0) > 0) {
      throw new RangeError('graceMs is not supported with store "etcd"');
    }
  }
  const table: LockStore = storeKind === "etcd"
    ? await EtcdStore.connect({
      endpoints: options.etcdEndpoints!,
      ...(options.etcdPrefix === undefined ? {} : { prefix: options.etcdPrefix }),
      defaultReleaseTimeout: options.defaultReleaseTimeout ?? 30_000,
      detectDeadlocks: dialect === "extended",
      ...(options.maxHeldKeys === undefined ? {} : { maxHeldKeys: options.maxHeldKeys }),
      ...(options.maxWaitersPerKey === undefined
        ? {}
        : { maxWaitersPerKey: options.maxWaitersPerKey }),
    })
    : new LockTable({
      sequentialIds: options.sequentialIds ?? false,
      defaultReleaseTimeout: options.defaultReleaseTimeout ?? 30_000,
      detectDeadlocks: dialect === "extended",
      ...(options.maxHeldKeys === undefined ? {} : { maxHeldKeys: options.maxHeldKeys }),
      ...(options.maxWaitersPerKey === undefined
        ? {}
        : { maxWaitersPerKey: options.maxWaitersPerKey }),
      ...(options.graceMs === undefined ? {} : { graceMs: options.graceMs }),
    });
  const counters: ServerCounters = { refusedConnections: 0 };
  const replies = dialectReplies(dialect);
  const context = {
    table,
    replies,
    maxLineLength,
    maxReplyBytes,
    idleTimeoutMs,
    counters,
    onEvent: options.onEvent,
    logCommands: options.verbose ?? false,
    admin: options.admin === true,
  };
  const open = new Map<ServerConnection, Promise<void>>();
  const refused = new Set<ServerConnection>();
  const listen = options.listen ?? await runtimeListen();
  let listener;
  try {
    listener = await listen(
      {
        hostname: options.hostname ?? "127.0.0.1",
        port,
        keepAlive,
        ...(tls === undefined ? {} : { tls }),
      },
      (conn) => {
        if (open.size >= maxConnections) {
          counters.refusedConnections++;
          refused.add(conn);
          void refuseConnection(conn, replies, "Too many connections")
            .finally(() => refused.delete(conn));
          return;
        }
        open.set(conn, serveConnection(conn, context).finally(() => open.delete(conn)));
      },
    );
  } catch (e) {
    await table.close();
    throw e;
  }
  let closing: Promise<void> | null = null;
  const close = () =>
    closing ??= (async () => {
      await listener.close();
      for (const conn of open.keys()) conn.abort();
      for (const conn of refused) conn.abort();
      if (table instanceof LockTable) {
        // Answers every waiting lock, so no handler stays parked in a wait.
        table.close();
        await Promise.all(open.values());
      } else {
        // The handlers withdraw their waits and detach their sessions in
        // etcd (their locks then follow the release timeout), then the store goes.
        await Promise.all(open.values());
        await table.close();
      }
    })();
  return {
    hostname: listener.hostname,
    port: listener.port,
    dialect,
    get connections() {
      return open.size;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
