/**
 * The settings every session of one {@linkcode ELockClient} shares, checked
 * once from {@linkcode ConnectOptions}, and how a session's connection is
 * opened.
 *
 * @module
 */

import { ConnectionClosedError, type ELockError, UnexpectedResponseError } from "../errors.ts";
import type { KeyEncoding } from "../protocol/commands.ts";
import { Connection } from "../protocol/connection.ts";
import { DEFAULT_PORT } from "../protocol/limits.ts";
import { type Reply, replyLine } from "../protocol/reply_reader.ts";
import { defaultTransport } from "../transport/default.ts";
import {
  _checkTlsOptions,
  type TlsOptions,
  type Transport,
  type TransportConnection,
} from "../transport/transport.ts";
import {
  type ConnectOptions,
  DEFAULT_COMMAND_TIMEOUT,
  DEFAULT_HOST,
  DEFAULT_POOL_SIZE,
  type ReconnectOptions,
} from "./options.ts";
import { checkNumber, checkOptions, checkSignal, checkType, describe } from "./checks.ts";

const CONNECT = "ELockClient.connect()";

/** The names of {@linkcode ConnectOptions} (every one: the type says so). */
export const CONNECT_OPTIONS: readonly string[] = Object.keys(
  {
    host: true,
    port: true,
    hosts: true,
    transport: true,
    signal: true,
    tls: true,
    releaseTimeout: true,
    keyEncoding: true,
    commandTimeout: true,
    logger: true,
    name: true,
    maxLineLength: true,
    reconnect: true,
    heartbeat: true,
    poolSize: true,
  } satisfies { [K in keyof ConnectOptions]-?: true },
);

/** What {@linkcode settingsOf} makes of {@linkcode ConnectOptions}. */
export interface Settings {
  /** The server connected to last (one of `endpoints`). */
  host: string;
  port: number;
  /** Every server to try, in order (one unless `hosts` was given). */
  readonly endpoints: readonly Endpoint[];
  /** The index in `endpoints` of the server the next connection tries first. */
  current: number;
  transport: Transport;
  tls: TlsOptions | undefined;
  keyEncoding: KeyEncoding;
  commandTimeout: number;
  logger: ConnectOptions["logger"];
  maxLineLength: number | undefined;
  reconnect: Required<ReconnectOptions> | null;
  heartbeat: number | null;
  poolSize: number;
}

export function settingsOf(options: ConnectOptions | undefined): Settings {
  checkOptions(CONNECT, options, CONNECT_OPTIONS, "port");
  if (options === undefined) options = {};
  checkType(CONNECT, "host", options.host, "string", 'a host name or address, e.g. "127.0.0.1"');
  checkNumber(CONNECT, "port", options.port, "a port number (1 to 65535)");
  checkType(CONNECT, "transport", options.transport, "object", "a Transport");
  checkSignal(CONNECT, options.signal);
  checkNumber(CONNECT, "releaseTimeout", options.releaseTimeout, "a whole number of ms");
  checkType(CONNECT, "keyEncoding", options.keyEncoding, "string", '"raw" or "sha1"');
  checkNumber(CONNECT, "commandTimeout", options.commandTimeout, "a number of ms (or Infinity)");
  checkType(CONNECT, "logger", options.logger, "object", "an object with a debug() method");
  if (options.logger !== undefined && typeof options.logger.debug !== "function") {
    throw new TypeError(`${CONNECT}: logger must be an object with a debug() method`);
  }
  checkNumber(CONNECT, "maxLineLength", options.maxLineLength, "a whole number of bytes");
  if (options.heartbeat !== false) {
    checkNumber(CONNECT, "heartbeat", options.heartbeat, "a number of ms, or false");
  }
  checkNumber(CONNECT, "poolSize", options.poolSize, "a whole number of sessions");
  const port = options.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`Invalid port: ${String(port)}`);
  }
  const endpoints = options.hosts === undefined
    ? [{ host: options.host ?? DEFAULT_HOST, port }]
    : endpointsOf(options.hosts, options.host, port);
  const { host } = endpoints[0]!;
  if (typeof host !== "string" || host === "") throw new TypeError(`Invalid host: ${String(host)}`);
  const keyEncoding = options.keyEncoding ?? "raw";
  if (keyEncoding !== "raw" && keyEncoding !== "sha1") {
    throw new TypeError(`Unknown key encoding: ${String(keyEncoding)}`);
  }
  const commandTimeout = options.commandTimeout ?? DEFAULT_COMMAND_TIMEOUT;
  if (typeof commandTimeout !== "number" || !(commandTimeout > 0)) {
    throw new RangeError(`Invalid command timeout: ${String(commandTimeout)} ms`);
  }
  const maxLineLength = options.maxLineLength;
  if (maxLineLength !== undefined && (!Number.isInteger(maxLineLength) || maxLineLength < 1)) {
    throw new RangeError(`Invalid maxLineLength: ${String(maxLineLength)}`);
  }
  const reconnect = reconnectOf(options.reconnect ?? options.releaseTimeout !== 0);
  const heartbeat = heartbeatOf(options.heartbeat, options.releaseTimeout);
  const poolSize = options.poolSize ?? DEFAULT_POOL_SIZE;
  if (!Number.isInteger(poolSize) || poolSize < 1) {
    throw new RangeError(`Invalid poolSize: ${String(poolSize)}`);
  }
  const transport = options.transport ?? defaultTransport();
  if (typeof transport?.connect !== "function") {
    throw new TypeError("Invalid transport: it has no connect() method");
  }
  const tls = options.tls === undefined || options.tls === false
    ? undefined
    : options.tls === true
    ? {}
    : options.tls;
  if (tls !== undefined) _checkTlsOptions(tls);
  return {
    host,
    port: endpoints[0]!.port,
    endpoints,
    current: 0,
    transport,
    tls,
    keyEncoding,
    commandTimeout,
    logger: options.logger,
    maxLineLength,
    reconnect,
    heartbeat,
    poolSize,
  };
}

/** One server of {@linkcode ConnectOptions.hosts}. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/**
 * Parses `"host:port"`, `"host"`, `"[v6]:port"`, `"[v6]"` or a bare IPv6
 * address; the port defaults to `port`.
 */
export function parseEndpoint(text: string, port: number): Endpoint {
  if (typeof text !== "string" || text.trim() !== text || text === "") {
    throw new TypeError(`Invalid host: ${JSON.stringify(text)} (expected "host:port")`);
  }
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const plain = /^([^:\[\]\s]+)(?::(\d+))?$/.exec(text);
  const match = bracketed ?? plain;
  if (match === null) {
    // A bare IPv6 address has several colons and no port.
    if (/^[0-9a-fA-F:.]+$/.test(text) && text.split(":").length > 2) {
      return { host: text, port };
    }
    throw new TypeError(`Invalid host: ${JSON.stringify(text)} (expected "host:port")`);
  }
  const number = match[2] === undefined ? port : Number(match[2]);
  if (!Number.isInteger(number) || number < 1 || number > 65535) {
    throw new RangeError(`Invalid port in ${JSON.stringify(text)}: expected 1-65535`);
  }
  return { host: match[1]!, port: number };
}

function endpointsOf(hosts: readonly string[], host: string | undefined, port: number): Endpoint[] {
  if (host !== undefined) throw new TypeError("Give either host or hosts, not both");
  if (!Array.isArray(hosts) || hosts.length === 0) {
    throw new TypeError(
      `Invalid hosts: ${String(hosts)} (expected a non-empty array of "host:port")`,
    );
  }
  return hosts.map((text) => parseEndpoint(text, port));
}

function heartbeatOf(
  option: number | false | undefined,
  releaseTimeout: number | undefined,
) {
  if (option === false) return null;
  if (option === undefined) {
    const third = Math.floor((releaseTimeout ?? 0) / 3);
    return third > 0 ? Math.min(10_000, Math.max(100, third)) : 10_000;
  }
  if (typeof option !== "number" || !(option > 0) || !Number.isFinite(option)) {
    throw new RangeError(`Invalid heartbeat: ${String(option)} ms`);
  }
  return option;
}

const RECONNECT_OPTIONS: readonly string[] = Object.keys(
  { initialDelay: true, maxDelay: true } satisfies { [K in keyof ReconnectOptions]-?: true },
);

function reconnectOf(option: boolean | ReconnectOptions): Required<ReconnectOptions> | null {
  if (option === false) return null;
  if (option === true) return { initialDelay: 50, maxDelay: 2000 };
  if (typeof option !== "object" || option === null || Array.isArray(option)) {
    throw new TypeError(
      `${CONNECT}: reconnect must be true, false or { initialDelay, maxDelay }, got ${
        describe(option)
      }`,
    );
  }
  checkOptions(`${CONNECT}: reconnect`, option, RECONNECT_OPTIONS);
  checkNumber(CONNECT, "reconnect.initialDelay", option.initialDelay, "a number of ms");
  checkNumber(CONNECT, "reconnect.maxDelay", option.maxDelay, "a number of ms");
  const { initialDelay = 50, maxDelay = Math.max(2000, initialDelay) } = option;
  for (const [name, ms] of [["initialDelay", initialDelay], ["maxDelay", maxDelay]] as const) {
    if (typeof ms !== "number" || !(ms >= 0) || !Number.isFinite(ms)) {
      throw new RangeError(`Invalid reconnect.${name}: ${String(ms)} ms`);
    }
  }
  if (maxDelay < initialDelay) {
    throw new RangeError(`reconnect.maxDelay (${maxDelay} ms) is below initialDelay`);
  }
  return { initialDelay, maxDelay };
}

/** The wait before attempt `attempt` (from 2): doubling, capped, less up to half at random. */
export function backoff(attempt: number, pacing: Required<ReconnectOptions>): number {
  const full = Math.min(pacing.maxDelay, pacing.initialDelay * 2 ** Math.min(attempt - 2, 30));
  return full / 2 + Math.random() * full / 2;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

export async function openConnection(
  settings: Settings,
  signal: AbortSignal | undefined,
  onDrop: ((error: ELockError) => boolean) | undefined,
  onAnyReply: (() => void) | undefined,
): Promise<Connection> {
  let stream: TransportConnection | null = null;
  const { endpoints } = settings;
  const failures: string[] = [];
  let lastCause: unknown;
  // Each server in turn, from the one to try first.
  const first = settings.current;
  for (let i = 0; i < endpoints.length && stream === null; i++) {
    const index = (first + i) % endpoints.length;
    const endpoint = endpoints[index]!;
    try {
      stream = await settings.transport.connect({
        host: endpoint.host,
        port: endpoint.port,
        ...(signal === undefined ? {} : { signal }),
        ...(settings.tls === undefined ? {} : { tls: settings.tls }),
      });
      settings.current = index;
      settings.host = endpoint.host;
      settings.port = endpoint.port;
    } catch (cause) {
      if (signal?.aborted && cause === signal.reason) throw cause;
      lastCause = cause;
      const detail = cause instanceof Error ? cause.message : String(cause);
      failures.push(`${endpointText(endpoint)}: ${detail}`);
    }
  }
  if (stream === null) {
    throw new ConnectionClosedError(`Cannot connect to ${failures.join("; ")}`, {
      cause: lastCause,
    });
  }
  const connection = new Connection(stream, {
    commandTimeout: settings.commandTimeout,
    logger: settings.logger,
    onDrop,
    onAnyReply,
    ...(settings.maxLineLength === undefined ? {} : { maxLineLength: settings.maxLineLength }),
  });
  ENDPOINTS.set(connection, settings.current);
  return connection;
}

const ENDPOINTS = new WeakMap<Connection, number>();

/** The index, in the settings' endpoints, of the server `connection` was opened to. */
export function endpointOf(connection: Connection): number {
  return ENDPOINTS.get(connection) ?? 0;
}

/** `host:port`, with brackets around an IPv6 host. */
export function endpointText(endpoint: Endpoint): string {
  return endpoint.host.includes(":")
    ? `[${endpoint.host}]:${endpoint.port}`
    : `${endpoint.host}:${endpoint.port}`;
}

/**
 * A connection to the server at `index` dropped: the next connection tries
 * the one after it first (once, however many sessions dropped from it).
 */
export function failOver(settings: Settings, index: number): void {
  if (settings.endpoints.length > 1 && settings.current === index) {
    settings.current = (index + 1) % settings.endpoints.length;
  }
}

export function unexpected(command: string, reply: Reply): UnexpectedResponseError {
  return new UnexpectedResponseError(command, replyLine(reply));
}
