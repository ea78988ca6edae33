/**
 * Which eLock server the client commands (`stats`, `debug`, `lock`) talk
 * to: `--host` and `--port`, else the `ELOCK_HOSTS` (several servers, as
 * `host:port,host:port`), `ELOCK_HOST` and `ELOCK_PORT` environment
 * variables, else 127.0.0.1:11400. A connection opened here has
 * no release timeout (`set_timeout 0`): no one can resume a CLI session, so
 * its locks go the moment it disconnects. `--connect-timeout` bounds the
 * time to connect and get the first reply (a port that accepts and never
 * answers, or drops every packet); a reply that is not eLock's makes the
 * error ask whether the address is an eLock server.
 *
 * @module
 */

import process from "node:process";
import { ELockClient } from "../client/client.ts";
import type { KeyEncoding } from "../protocol/commands.ts";
import { ProtocolError, UnexpectedResponseError } from "../errors.ts";
import { parseEndpoint } from "../client/settings.ts";
import { DEFAULT_PORT } from "../protocol/limits.ts";
import { quote, wholeNumberFlag } from "./flags.ts";
import { UsageError } from "./subcommand.ts";

/** The flags every client command accepts. */
export const ADDRESS_FLAGS = {
  host: { type: "string" },
  port: { type: "string" },
  "connect-timeout": { type: "string" },
} as const;

/**
 * How long a client command waits by default to connect and get the
 * server's first reply, in ms (`--connect-timeout`).
 *
 * @example
 * ```ts
 * console.log(`gives up after ${DEFAULT_CONNECT_TIMEOUT_MS / 1000} s`); // 10 s
 * ```
 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** The help lines of {@linkcode ADDRESS_FLAGS}. */
export const ADDRESS_HELP =
  `  --host HOST            server host (default $ELOCK_HOST, else 127.0.0.1); several servers
                         that act as one: --host a:PORT,b:PORT (default $ELOCK_HOSTS)
  --port PORT            server port (default $ELOCK_PORT, else ${DEFAULT_PORT})
  --connect-timeout MS   give up when connecting and the server's first reply
                         take longer than MS ms (default ${DEFAULT_CONNECT_TIMEOUT_MS})`;

/** Where a client command connects. */
export interface ServerAddress {
  /** Host name or address. */
  readonly host: string;
  /** TCP port, 1-65535. */
  readonly port: number;
  /** Several servers that act as one (`--host a:p,b:p`, `ELOCK_HOSTS`), the first as `host`. */
  readonly hosts?: readonly string[];
  /** How long to connect and get the first reply, in ms (default {@linkcode DEFAULT_CONNECT_TIMEOUT_MS}). */
  readonly connectTimeout?: number;
}

/**
 * Reads the server address from the flags, then the environment.
 *
 * @param values the `--host` and `--port` flags, if given
 * @param env the environment (default `process.env`)
 * @returns the host and port
 * @throws {UsageError} on an empty host or a port that is not 1-65535
 *
 * @example
 * ```ts
 * serverAddress({ port: "11401" }, { ELOCK_HOST: "elock.internal" });
 * // { host: "elock.internal", port: 11401 }
 * ```
 */
export function serverAddress(
  values: {
    readonly host?: string;
    readonly port?: string;
    readonly "connect-timeout"?: string;
  },
  env: Readonly<Record<string, string | undefined>> = process.env,
): ServerAddress {
  const timeout = values["connect-timeout"];
  const connectTimeout = timeout === undefined
    ? {}
    : { connectTimeout: wholeNumberFlag("--connect-timeout", timeout, 1, 2_147_483_647) };
  const [host, hostFrom] = values.host !== undefined
    ? [values.host, "--host"]
    : env.ELOCK_HOSTS !== undefined && env.ELOCK_HOSTS !== ""
    ? [env.ELOCK_HOSTS, "ELOCK_HOSTS"]
    : [env.ELOCK_HOST, "ELOCK_HOST"];
  if (host === "") throw new UsageError(`${hostFrom} is empty`);
  const [port, portFrom] = values.port !== undefined
    ? [values.port, "--port"]
    : [env.ELOCK_PORT, "ELOCK_PORT"];
  const number = port === undefined || port === ""
    ? DEFAULT_PORT
    : wholeNumberFlag(portFrom, port, 1, 65535);
  if (host !== undefined && (host.includes(",") || hostFrom === "ELOCK_HOSTS")) {
    const hosts = host.split(",");
    let endpoints;
    try {
      endpoints = hosts.map((text) => parseEndpoint(text, number));
    } catch (error) {
      throw new UsageError(`invalid ${hostFrom} ${quote(host)}: ${(error as Error).message}`);
    }
    return { host: endpoints[0]!.host, port: endpoints[0]!.port, hosts, ...connectTimeout };
  }
  return { host: host ?? "127.0.0.1", port: number, ...connectTimeout };
}

/**
 * The address as a user reads it: `host:port`, or the `--host` list.
 *
 * @example
 * ```ts
 * addressText({ host: "127.0.0.1", port: 11400 }); // "127.0.0.1:11400"
 * ```
 */
export function addressText(address: ServerAddress): string {
  if (address.hosts !== undefined) return address.hosts.join(",");
  return address.host.includes(":")
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;
}

/**
 * The error to show for `error`, which came from talking to `address`: a
 * reply that is not eLock's (an HTTP server, garbage) asks whether the
 * address is an eLock server; other errors are returned as they are.
 *
 * @param error what the client threw
 * @param address the server it talked to
 * @param connecting whether it came while connecting: then an unexpected
 *   reply counts too (every eLock server answers `set_timeout 0` with 200)
 * @returns the error to show
 *
 * @example
 * ```ts ignore
 * throw explainError(error, address); // "... is 127.0.0.1:80 an eLock server?"
 * ```
 */
export function explainError(error: unknown, address: ServerAddress, connecting = false): unknown {
  if (
    error instanceof ProtocolError || (connecting && error instanceof UnexpectedResponseError)
  ) {
    return new Error(`${error.message} (is ${addressText(address)} an eLock server?)`, {
      cause: error,
    });
  }
  return error;
}

/**
 * Connects to the server at `address`, giving up when `signal` is aborted.
 *
 * @example
 * ```ts ignore
 * await using client = await connectTo({ host: "127.0.0.1", port: 11400 }, io.signal);
 * ```
 */
export async function connectTo(
  address: ServerAddress,
  signal: AbortSignal,
  options: { readonly keyEncoding?: KeyEncoding } = {},
): Promise<ELockClient> {
  const where = address.hosts === undefined
    ? { host: address.host, port: address.port }
    : { hosts: address.hosts, port: address.port };
  const ms = address.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), ms);
  try {
    return await ELockClient.connect({
      ...where,
      ...options,
      signal: AbortSignal.any([signal, timeout.signal]),
      releaseTimeout: 0,
    });
  } catch (error) {
    if (timeout.signal.aborted && !signal.aborted) {
      throw new Error(
        `no reply from ${addressText(address)} within ${ms} ms (--connect-timeout ${ms}): ` +
          `is an eLock server listening there?`,
      );
    }
    throw explainError(error, address, true);
  } finally {
    clearTimeout(timer);
  }
}
