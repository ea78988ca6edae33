/**
 * `elock debug`: the sessions, locks and waiting requests of an extended
 * server, as a table, as JSON, or as the wait-for graph in Graphviz DOT.
 *
 * @module
 */

import { UnsupportedCommandError } from "../errors.ts";
import { encodeKey } from "../protocol/commands.ts";
import type { DebugInfo } from "../protocol/reply_reader.ts";
import { isSessionName } from "../protocol/session_name.ts";
import { noPositionals, parseFlags } from "./flags.ts";
import {
  ADDRESS_FLAGS,
  ADDRESS_HELP,
  connectTo,
  explainError,
  serverAddress,
} from "./server_address.ts";
import { type Subcommand, UsageError } from "./subcommand.ts";

const HELP = `Usage: elock debug [options]

Prints the sessions, the locks and the waiting requests of an extended eLock
server (an original server has no debug command). The session of this
command itself is marked "(elock debug)". NAME and PEER (the bundled server
only; "-" elsewhere) are the name the client gave (ConnectOptions.name) and
the address its connection comes from. A key of 40 hex digits (a SHA-1, as
keyEncoding "sha1", the PHP client and elock lock --sha1 send) is marked
"(sha1)"; --sha1 NAMES tells which of them is whose.

Options:
${ADDRESS_HELP}
  --json                 print the parsed debug reply as one JSON object
  --sha1 NAME[,NAME...]  label the keys that are the SHA-1 of one of these
                         names: (sha1 of "NAME"); with --json, those locks and
                         requests get "sha1Of": "NAME"
  --dot                  print the wait-for graph in Graphviz DOT: an edge
                         from each waiting session to each holder of the key
                         it waits for (render: elock debug --dot | dot -Tsvg)
  -h, --help             show this help

Exit codes: 0 printed, 1 the server could not be reached, failed or has no
debug command, 2 wrong usage.
`;

const FLAGS = {
  ...ADDRESS_FLAGS,
  json: { type: "boolean" },
  dot: { type: "boolean" },
  sha1: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** The `debug` entry of the CLI's table of subcommands. */
export const debugCommand: Subcommand = {
  name: "debug",
  summary: "print sessions, locks and waiters (--json, --dot)",
  help: HELP,
  parse(args) {
    const { values, positionals } = parseFlags(args, FLAGS);
    if (values.help) return "help";
    noPositionals(positionals);
    if (values.json && values.dot) throw new UsageError("--json and --dot exclude each other");
    const address = serverAddress(values);
    const names = values.sha1 === undefined ? [] : values.sha1.split(",");
    if (names.includes("")) throw new UsageError("option --sha1 needs names (NAME[,NAME...])");
    return async (io) => {
      await using client = await connectTo(address, io.signal);
      let info: DebugInfo;
      try {
        info = await client.debug();
      } catch (error) {
        if (!(error instanceof UnsupportedCommandError)) throw explainError(error, address);
        throw new Error(
          `the server at ${address.host}:${address.port} has no debug command ` +
            `(an original eLock server): ${error.reply}`,
        );
      }
      const hashes = new Map<string, string>();
      for (const name of names) hashes.set(await encodeKey(name, "sha1"), name);
      if (values.json) io.stdout(`${JSON.stringify(labelSha1(info, hashes))}\n`);
      else if (values.dot) io.stdout(formatDot(info));
      else io.stdout(formatDebugTable(info, await client.sessionId(), hashes));
      return 0;
    };
  },
};

/** The id of a session object of a `debug` reply, as text; `"?"` when it has none. */
function sessionIdOf(session: unknown): string {
  const id = (session as { id?: unknown } | null)?.id;
  return typeof id === "string" || typeof id === "number" ? String(id) : "?";
}

/** A field of a session object, or `undefined`. */
function field(session: unknown, name: string): unknown {
  return typeof session === "object" && session !== null
    ? (session as Record<string, unknown>)[name]
    : undefined;
}

/** Wire text made safe for a terminal: control characters escaped. */
function printable(text: string): string {
  return text.replace(/[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** A SHA-1 in hex, as keyEncoding "sha1" sends keys. */
const SHA1_HEX = /^[0-9a-f]{40}$/;

/** A key as the table shows it: a SHA-1 marked, and named when one of `hashes`. */
function keyText(key: string, hashes: ReadonlyMap<string, string>): string {
  const name = hashes.get(key);
  if (name !== undefined) return `${key} (sha1 of ${JSON.stringify(name)})`;
  return SHA1_HEX.test(key) ? `${key} (sha1)` : printable(key);
}

/** `info` with `sha1Of` on the locks and requests whose key is the SHA-1 of a name of `hashes`. */
function labelSha1(info: DebugInfo, hashes: ReadonlyMap<string, string>): DebugInfo {
  if (hashes.size === 0) return info;
  const label = <T extends { key: string }>(item: T): T => {
    const name = hashes.get(item.key);
    return name === undefined ? item : { ...item, sha1Of: name };
  };
  return { ...info, locks: info.locks.map(label), requests: info.requests.map(label) };
}

/** Rows as aligned columns, each line indented by two spaces. */
function columns(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((row) => `  ${row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ")}`.trimEnd())
    .join("\n") + "\n";
}

/**
 * Formats a `debug` reply as three tables: sessions (with the name and peer
 * address the bundled server shows), locks, waiters.
 *
 * @param info the parsed reply
 * @param self the session id of the asking client (its `conn_id`), whose
 *   session (printed as its public name, or as the id itself) is marked `(elock debug)`
 * @param hashes names by their SHA-1 (hex): keys that are one of them are labelled
 * @returns the text, ending in a newline
 *
 * @example
 * ```ts
 * formatDebugTable({
 *   sessions: [{ id: 1, disposeTimeout: 30000, disposeTimeoutId: null }],
 *   locks: [{ key: "invoice-42", holders: ["1"], value: null }],
 *   requests: [],
 * }, "1");
 * ```
 */
export function formatDebugTable(
  info: DebugInfo,
  self: string,
  hashes: ReadonlyMap<string, string> = new Map(),
): string {
  const sessions = info.sessions.map((s) => {
    const id = sessionIdOf(s);
    const timeout = field(s, "disposeTimeout");
    const expiresIn = field(s, "expiresIn");
    const connected = field(s, "disposeTimeoutId") === null;
    return [
      printable(id) + (isSessionName(id, self) ? " (elock debug)" : ""),
      s.name === undefined ? "-" : printable(s.name),
      s.peer === undefined ? "-" : printable(s.peer),
      connected ? "yes" : "no",
      typeof timeout === "number" ? `${timeout} ms` : "-",
      typeof expiresIn === "number" ? `${expiresIn} ms` : "-",
    ];
  });
  const locks = info.locks.map((l) => [
    keyText(l.key, hashes),
    l.holders.map((h) => `#${printable(h)}`).join(", "),
    l.value === null ? "(exclusive)" : printable(l.value),
  ]);
  const holders = new Map(info.locks.map((l) => [l.key, l.holders]));
  const waiters = info.requests.map((r) => [
    `#${printable(r.session)}`,
    keyText(r.key, hashes),
    (holders.get(r.key) ?? []).map((h) => `#${printable(h)}`).join(", ") || "-",
  ]);
  return [
    `SESSIONS (${sessions.length})\n`,
    columns(["ID", "NAME", "PEER", "CONNECTED", "RELEASE TIMEOUT", "EXPIRES IN"], sessions),
    `\nLOCKS (${locks.length})\n`,
    columns(["KEY", "HOLDERS", "VALUE"], locks),
    `\nWAITERS (${waiters.length})\n`,
    columns(["SESSION", "WAITS FOR", "HELD BY"], waiters),
  ].join("");
}

/** A Graphviz quoted ID. */
function dotString(text: string): string {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\r?\n/g, "\\n")}"`;
}

/**
 * Formats the wait-for graph of a `debug` reply in Graphviz DOT: a node per
 * session (labelled with the keys it holds), an edge from each waiting
 * session to each holder of the key it waits for, labelled with the key. A
 * deadlock shows as a cycle.
 *
 * @param info the parsed reply
 * @returns the DOT text, ending in a newline
 *
 * @example
 * ```ts
 * formatDot({
 *   sessions: [{ id: 1 }, { id: 2 }],
 *   locks: [{ key: "journal", holders: ["1"], value: null }],
 *   requests: [{ session: "2", key: "journal" }],
 * });
 * // digraph "elock wait-for" { ... "2" -> "1" [label="journal"]; }
 * ```
 */
export function formatDot(info: DebugInfo): string {
  const held = new Map<string, string[]>();
  for (const session of info.sessions) held.set(sessionIdOf(session), []);
  for (const lock of info.locks) {
    for (const holder of lock.holders) {
      const keys = held.get(holder) ?? [];
      keys.push(lock.value === null ? lock.key : `${lock.key} (${lock.value})`);
      held.set(holder, keys);
    }
  }
  for (const request of info.requests) {
    if (!held.has(request.session)) held.set(request.session, []);
  }
  const lines = ['digraph "elock wait-for" {', "  node [shape=box];"];
  for (const [id, keys] of held) {
    const label = keys.length === 0 ? `#${id}` : `#${id}\nholds ${keys.join(", ")}`;
    lines.push(`  ${dotString(id)} [label=${dotString(label)}];`);
  }
  const holders = new Map(info.locks.map((l) => [l.key, l.holders]));
  for (const request of info.requests) {
    for (const holder of holders.get(request.key) ?? []) {
      if (holder === request.session) continue;
      lines.push(
        `  ${dotString(request.session)} -> ${dotString(holder)} [label=${
          dotString(request.key)
        }];`,
      );
    }
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}
