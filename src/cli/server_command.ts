/**
 * `elock server`: runs the bundled eLock server in the foreground, logging to
 * standard error, until SIGINT or SIGTERM.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import {
  DEFAULT_KEEPALIVE_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_HELD_KEYS,
  DEFAULT_MAX_LINE_LENGTH,
  DEFAULT_MAX_REPLY_BYTES,
  DEFAULT_MAX_WAITERS_PER_KEY,
  DEFAULT_PORT,
  type ServerEvent,
  type ServerOptions,
  startServer,
} from "../server/mod.ts";
import { MAX_WAIT_MS } from "../server/lock_table.ts";
import { noPositionals, parseFlags, quote, wholeNumberFlag } from "./flags.ts";
import { type CliIo, type Subcommand, UsageError } from "./subcommand.ts";

const HELP = `Usage: elock server [options]

Runs the bundled eLock server until SIGINT or SIGTERM. Logs to standard error.

Options:
  --host HOST            address to bind (default 127.0.0.1)
  --port PORT            port to bind, 0 for any free port (default ${DEFAULT_PORT})
  --dialect DIALECT      extended or original (default extended)
  --sequential-ids       hand out guessable session ids 1, 2, 3...
  --max-line-length N    longest command line in bytes (default ${DEFAULT_MAX_LINE_LENGTH})
  --max-held-keys N      keys one session may hold at once (default ${DEFAULT_MAX_HELD_KEYS})
  --max-waiters-per-key N
                         requests that may wait for one key (default ${DEFAULT_MAX_WAITERS_PER_KEY})
  --grace MS             grant no lock for MS ms after start (Chubby's lock-delay;
                         default 0: off); waits queue and are granted when it ends
  --max-connections N    most client connections at once; one more is refused
                         with an error line (default ${DEFAULT_MAX_CONNECTIONS})
  --max-reply-bytes N    longest reply (debug, a 409 listing holders); a longer
                         one is answered "Reply too large" (default ${DEFAULT_MAX_REPLY_BYTES})
  --idle-timeout MS      close a connection that sent nothing for MS ms and has
                         no waiting lock (default 0: never; an idle client that
                         holds a lock is normal)
  --keepalive MS         TCP keepalive on accepted sockets, first probe after
                         MS ms of silence; 0 turns it off (default ${DEFAULT_KEEPALIVE_MS})
  --tls-cert FILE        serve TLS with this PEM certificate (chain); needs --tls-key
  --tls-key FILE         the PEM private key of --tls-cert
  --store STORE          where the lock table lives: memory (default) or etcd
  --etcd-endpoints URLS  etcd client URLs for --store etcd, comma-separated
                         (http://127.0.0.1:2379,...); servers on one etcd
                         cluster share one table, and sessions resume on any
  --etcd-prefix PREFIX   key prefix of the table in etcd (default elock/)
  --admin                accept the operator command force_unlock KEY (elock
                         unlock --force KEY): frees KEY whoever holds it; each
                         use is logged. Anyone who can connect may use it
  --verbose              also log every command and its reply
  -h, --help             show this help
`;

const FLAGS = {
  host: { type: "string" },
  port: { type: "string" },
  dialect: { type: "string" },
  "sequential-ids": { type: "boolean" },
  "max-line-length": { type: "string" },
  "max-held-keys": { type: "string" },
  "max-waiters-per-key": { type: "string" },
  grace: { type: "string" },
  "max-connections": { type: "string" },
  "max-reply-bytes": { type: "string" },
  "idle-timeout": { type: "string" },
  keepalive: { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  store: { type: "string" },
  "etcd-endpoints": { type: "string" },
  "etcd-prefix": { type: "string" },
  verbose: { type: "boolean" },
  admin: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** Longest part of a command or reply written to the log. */
const MAX_LOGGED = 200;

/** The `server` entry of the CLI's table of subcommands. */
export const serverCommand: Subcommand = {
  name: "server",
  summary: "run the bundled eLock server",
  help: HELP,
  parse(args) {
    const options = parseServerArgs(args);
    return options === "help" ? "help" : (io) => runServer(options, io);
  },
};

/**
 * Parses the arguments of `elock server` into options for
 * {@linkcode startServer}.
 *
 * @param args the arguments after `server`
 * @returns the server options, or `"help"` if `--help` was given
 * @throws {UsageError} when an argument is wrong, or a `--tls-cert` or
 *   `--tls-key` file cannot be read
 *
 * @example
 * ```ts
 * parseServerArgs(["--port", "0", "--dialect", "original"]);
 * // { hostname: "127.0.0.1", port: 0, dialect: "original", ... }
 * ```
 */
export function parseServerArgs(args: readonly string[]): ServerOptions | "help" {
  const { values, positionals } = parseFlags(args, FLAGS);
  if (values.help) return "help";
  noPositionals(positionals);
  const port = values.port === undefined
    ? DEFAULT_PORT
    : wholeNumberFlag("--port", values.port, 0, 65535);
  const dialect = values.dialect ?? "extended";
  if (dialect !== "extended" && dialect !== "original") {
    throw new UsageError(`invalid dialect ${quote(dialect)} (expected extended or original)`);
  }
  const maxLine = values["max-line-length"];
  const maxLineLength = maxLine === undefined ? DEFAULT_MAX_LINE_LENGTH : wholeNumberFlag(
    "--max-line-length",
    maxLine,
    16,
    Number.MAX_SAFE_INTEGER,
    "a whole number of at least 16",
  );
  const limits = parseTableLimits(values);
  const maxConnections = wholeFlag(values, "max-connections", 1, DEFAULT_MAX_CONNECTIONS);
  const maxReplyBytes = wholeFlag(values, "max-reply-bytes", 1024, DEFAULT_MAX_REPLY_BYTES);
  const idleTimeout = wholeFlag(values, "idle-timeout", 0, 0);
  const keepAlive = wholeFlag(values, "keepalive", 0, DEFAULT_KEEPALIVE_MS);
  if (values.host === "") throw new UsageError("option --host needs a value");
  const tls = parseTls(values["tls-cert"], values["tls-key"]);
  const store = parseStore(values.store, values["etcd-endpoints"], values["etcd-prefix"]);
  return {
    hostname: values.host ?? "127.0.0.1",
    port,
    dialect,
    sequentialIds: values["sequential-ids"] ?? false,
    maxLineLength,
    maxConnections,
    maxReplyBytes,
    idleTimeout,
    keepAlive,
    verbose: values.verbose ?? false,
    ...(values.admin ? { admin: true } : {}),
    ...limits,
    ...(tls === undefined ? {} : { tls }),
    ...store,
  };
}

/** `--store`, `--etcd-endpoints` and `--etcd-prefix`, those given. */
function parseStore(
  store: string | undefined,
  endpoints: string | undefined,
  prefix: string | undefined,
): Pick<ServerOptions, "store" | "etcdEndpoints" | "etcdPrefix"> {
  if (store === undefined) {
    if (endpoints !== undefined || prefix !== undefined) {
      throw new UsageError("options --etcd-endpoints and --etcd-prefix need --store etcd");
    }
    return {};
  }
  if (store === "memory") {
    if (endpoints !== undefined || prefix !== undefined) {
      throw new UsageError("options --etcd-endpoints and --etcd-prefix need --store etcd");
    }
    return { store };
  }
  if (store !== "etcd") {
    throw new UsageError(`invalid --store ${quote(store)} (expected memory or etcd)`);
  }
  if (endpoints === undefined) throw new UsageError("option --store etcd needs --etcd-endpoints");
  const urls = endpoints.split(",").map((u) => u.trim()).filter((u) => u !== "");
  if (urls.length === 0) throw new UsageError("option --etcd-endpoints needs a value");
  for (const url of urls) {
    if (!/^https?:\/\/[^/\s]+$/.test(url)) {
      throw new UsageError(`invalid etcd endpoint ${quote(url)} (expected http://host:port)`);
    }
  }
  if (prefix === "") throw new UsageError("option --etcd-prefix needs a value");
  return { store, etcdEndpoints: urls, ...(prefix === undefined ? {} : { etcdPrefix: prefix }) };
}

/** `--max-held-keys`, `--max-waiters-per-key` and `--grace`, those given. */
function parseTableLimits(
  values: { "max-held-keys"?: string; "max-waiters-per-key"?: string; grace?: string },
): Pick<ServerOptions, "maxHeldKeys" | "maxWaitersPerKey" | "graceMs"> {
  const limits: Pick<ServerOptions, "maxHeldKeys" | "maxWaitersPerKey" | "graceMs"> = {};
  const whole = (flag: string, text: string, min: number, max: number): number =>
    wholeNumberFlag(`--${flag}`, text, min, max);
  const held = values["max-held-keys"];
  if (held !== undefined) limits.maxHeldKeys = whole("max-held-keys", held, 1, 2 ** 31);
  const waiters = values["max-waiters-per-key"];
  if (waiters !== undefined) {
    limits.maxWaitersPerKey = whole("max-waiters-per-key", waiters, 1, 2 ** 31);
  }
  if (values.grace !== undefined) limits.graceMs = whole("grace", values.grace, 0, MAX_WAIT_MS);
  return limits;
}

/** The whole number of `--NAME` (at least `min`), or `fallback` when absent. */
function wholeFlag(
  values: Partial<Record<string, string | boolean>>,
  name: string,
  min: number,
  fallback: number,
): number {
  const text = values[name];
  if (typeof text !== "string") return fallback;
  const max = name === "max-connections" || name === "max-reply-bytes"
    ? Number.MAX_SAFE_INTEGER
    : 2_147_483_647;
  return wholeNumberFlag(`--${name}`, text, min, max);
}

/** Reads the files of `--tls-cert` and `--tls-key`, given both or neither. */
function parseTls(
  certFile: string | undefined,
  keyFile: string | undefined,
): ServerOptions["tls"] {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined) throw new UsageError("option --tls-key needs --tls-cert");
  if (keyFile === undefined) throw new UsageError("option --tls-cert needs --tls-key");
  return { cert: readPem(certFile, "--tls-cert"), key: readPem(keyFile, "--tls-key") };
}

function readPem(file: string, flag: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new UsageError(`cannot read ${flag} file ${quote(file)}: ${reason}`);
  }
  if (!text.includes("-----BEGIN")) {
    throw new UsageError(`${flag} file ${quote(file)} is not PEM (no "-----BEGIN" line)`);
  }
  return text;
}

/**
 * Runs the server until `io.signal` is aborted, logging to `io.stderr`.
 *
 * @param options how to start the server (as from {@linkcode parseServerArgs})
 * @param io where to log, and when to stop
 * @returns 0 after a clean stop, 1 if the server could not start
 *
 * @example
 * ```ts
 * const stop = new AbortController();
 * const done = runServer({ port: 0 }, {
 *   stdout: () => {},
 *   stderr: (text) => console.error(text.trimEnd()),
 *   signal: stop.signal,
 * });
 * stop.abort("SIGTERM");
 * await done; // 0
 * ```
 */
export async function runServer(options: ServerOptions, io: CliIo): Promise<number> {
  const log = (line: string) => io.stderr(`elock: ${line}\n`);
  let server;
  try {
    server = await startServer({ ...options, onEvent: (event) => log(formatEvent(event)) });
  } catch (error) {
    const where = formatAddress(options.hostname ?? "127.0.0.1", options.port ?? DEFAULT_PORT);
    log(`cannot start server on ${where}: ${error instanceof Error ? error.message : error}`);
    return 1;
  }
  const where = formatAddress(server.hostname, server.port);
  const store = options.store === "etcd"
    ? ` (lock table on etcd: ${options.etcdEndpoints?.join(",")})`
    : "";
  const admin = options.admin === true ? " (admin commands on)" : "";
  log(
    `${server.dialect} server listening on ${where}${options.tls ? " (TLS)" : ""}${store}${admin}`,
  );
  const signal = io.signal;
  if (!signal.aborted) {
    await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
  }
  log(`${typeof signal.reason === "string" ? signal.reason : "stop request"} received, stopping`);
  await server.close();
  log("stopped");
  return 0;
}

/**
 * Formats a server event as one log line (without the `elock: ` prefix).
 *
 * @example
 * ```ts
 * formatEvent({ type: "connect", session: "7", remote: "127.0.0.1:50000" });
 * // "#7 connected from 127.0.0.1:50000"
 * ```
 */
export function formatEvent(event: ServerEvent): string {
  switch (event.type) {
    case "connect":
      return `#${event.session} connected from ${event.remote}`;
    case "resume":
      return `#${event.session} resumed from ${event.remote}`;
    case "disconnect": {
      const locks = event.held === 1 ? "1 lock" : `${event.held} locks`;
      return `#${event.session} disconnected from ${event.remote} holding ${locks}`;
    }
    case "wait":
      return `#${event.session} waits for ${printable(event.key)}`;
    case "command":
      return `#${event.session} ${printable(event.line)} => ${printable(event.reply)}`;
    case "force_unlock": {
      const who = `#${event.session} (${event.remote}) force_unlock ${printable(event.key)}`;
      if (event.outcome === "refused") return `${who}: refused (the server runs without --admin)`;
      if (event.outcome === "not_locked") return `${who}: it was not locked`;
      return `${who}: released it from ${event.holders.map((h) => `#${h}`).join(", ")}`;
    }
  }
}

function formatAddress(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/**
 * Makes wire text safe for a one-line log: decodes it as UTF-8 (the server
 * hands lines over byte for byte), joins a multi-line reply with ` | `,
 * escapes control characters and shortens it.
 */
function printable(wire: string): string {
  const bytes = Uint8Array.from(wire, (c) => c.charCodeAt(0) & 0xff);
  let text = new TextDecoder().decode(bytes).replace(/\r?\n/g, " | ");
  if (text.length > MAX_LOGGED) {
    text = `${text.slice(0, MAX_LOGGED)}... (${text.length - MAX_LOGGED} more characters)`;
  }
  return text.replace(/[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu, (c) => {
    const code = c.charCodeAt(0);
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}
