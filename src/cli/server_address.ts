/**
 * Which eLock server the client commands (`stats`, `debug`, `lock`) talk
 * to: `--host` and `--port`, else the `ELOCK_HOSTS` (several servers, as
 * `host:port,host:port`), `ELOCK_HOST` and `ELOCK_PORT` environment
 * variables, else 127.0.0.1:11400. A connection opened here has
 * no release timeout (`set_timeout 0`): no one can resume a CLI session, so
 * its locks go the moment it disconnects.
 *
 * @module
 */

import process from "node:process";
import { ELockClient } from "../client/client.ts";
import { parseEndpoint } from "../client/settings.ts";
import { DEFAULT_PORT } from "../protocol/limits.ts";
import { parseWholeNumber, quote } from "./flags.ts";
import { UsageError } from "./subcommand.ts";

/** The flags every client command accepts. */
export const ADDRESS_FLAGS = {
  host: { type: "string" },
  port: { type: "string" },
} as const;

/** The help lines of {@linkcode ADDRESS_FLAGS}. */
export const ADDRESS_HELP =
  `  --host HOST            server host (default $ELOCK_HOST, else 127.0.0.1); several servers
                         that act as one: --host a:PORT,b:PORT (default $ELOCK_HOSTS)
  --port PORT            server port (default $ELOCK_PORT, else ${DEFAULT_PORT})`;

/** Where a client command connects. */
export interface ServerAddress {
  /** Host name or address. */
  readonly host: string;
  /** TCP port, 1-65535. */
  readonly port: number;
  /** Several servers that act as one (`--host a:p,b:p`, `ELOCK_HOSTS`), the first as `host`. */
  readonly hosts?: readonly string[];
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
  values: { readonly host?: string; readonly port?: string },
  env: Readonly<Record<string, string | undefined>> = process.env,
): ServerAddress {
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
    : parseWholeNumber(port, 1, 65535);
  if (number === null) {
    throw new UsageError(`invalid ${portFrom} ${quote(port!)} (expected a whole number 1-65535)`);
  }
  if (host !== undefined && (host.includes(",") || hostFrom === "ELOCK_HOSTS")) {
    const hosts = host.split(",");
    let endpoints;
    try {
      endpoints = hosts.map((text) => parseEndpoint(text, number));
    } catch (error) {
      throw new UsageError(`invalid ${hostFrom} ${quote(host)}: ${(error as Error).message}`);
    }
    return { host: endpoints[0]!.host, port: endpoints[0]!.port, hosts };
  }
  return { host: host ?? "127.0.0.1", port: number };
}

/**
 * Connects to the server at `address`, giving up when `signal` is aborted.
 *
 * @example
 * ```ts ignore
 * await using client = await connectTo({ host: "127.0.0.1", port: 11400 }, io.signal);
 * ```
 */
export async function connectTo(address: ServerAddress, signal: AbortSignal): Promise<ELockClient> {
  const where = address.hosts === undefined
    ? { host: address.host, port: address.port }
    : { hosts: address.hosts, port: address.port };
  return await ELockClient.connect({ ...where, signal, releaseTimeout: 0 });
}
