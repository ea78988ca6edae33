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

/** What {@linkcode settingsOf} makes of {@linkcode ConnectOptions}. */
export interface Settings {
  host: string;
  port: number;
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

export function settingsOf(options: ConnectOptions): Settings {
  if (typeof options !== "object" || options === null) {
    throw new TypeError("ELockClient.connect() takes an options object");
  }
  const host = options.host ?? DEFAULT_HOST;
  if (typeof host !== "string" || host === "") throw new TypeError(`Invalid host: ${String(host)}`);
  const port = options.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`Invalid port: ${String(port)}`);
  }
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
    port,
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

function reconnectOf(option: boolean | ReconnectOptions): Required<ReconnectOptions> | null {
  if (option === false) return null;
  if (option === true) return { initialDelay: 50, maxDelay: 2000 };
  if (typeof option !== "object" || option === null) {
    throw new TypeError(`Invalid reconnect option: ${String(option)}`);
  }
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
  let stream: TransportConnection;
  try {
    stream = await settings.transport.connect({
      host: settings.host,
      port: settings.port,
      ...(signal === undefined ? {} : { signal }),
      ...(settings.tls === undefined ? {} : { tls: settings.tls }),
    });
  } catch (cause) {
    if (signal?.aborted && cause === signal.reason) throw cause;
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new ConnectionClosedError(
      `Cannot connect to ${settings.host}:${settings.port}: ${detail}`,
      { cause },
    );
  }
  return new Connection(stream, {
    commandTimeout: settings.commandTimeout,
    logger: settings.logger,
    onDrop,
    onAnyReply,
    ...(settings.maxLineLength === undefined ? {} : { maxLineLength: settings.maxLineLength }),
  });
}

export function then<T, U>(value: T | Promise<T>, fn: (value: T) => U): U | Promise<U> {
  return value instanceof Promise ? value.then(fn) : fn(value);
}

export function unexpected(command: string, reply: Reply): UnexpectedResponseError {
  return new UnexpectedResponseError(command, replyLine(reply));
}
