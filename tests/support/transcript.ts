/**
 * Transcript replayer for tests: parses the recorded sessions of
 * `tests/fixtures/{original,extended}/*.txt` (format: "Transcript format" in
 * PROTOCOL.md) and replays them against a running server over real TCP,
 * comparing every received line byte for byte.
 *
 * ```
 * A> text        A sends "text\n"
 * A< text        A receives exactly this line (a trailing \r is written \r)
 * A- quiet       nothing arrives at A within 300 ms
 * A! eof         the server closed A's connection
 * A- still open  the server did not close A's connection within 2 s
 * A x            A closes its connection
 * sleep S        wait S seconds
 * ```
 *
 * `{A}` stands for the session id connection A got from its first `conn_id`:
 * the step `A< 200 {A}` binds it, and every later `{A}` (also in `#{A}`)
 * must be exactly that id.
 *
 * @module
 */

import { AssertionError } from "node:assert/strict";
import { LineClient } from "./line_client.ts";
import { sessionName } from "../../mod.ts";

/** One step of a transcript. */
export type Step =
  | { readonly kind: "send"; readonly conn: string; readonly text: string }
  | { readonly kind: "receive"; readonly conn: string; readonly text: string }
  | { readonly kind: "quiet"; readonly conn: string }
  | { readonly kind: "eof"; readonly conn: string }
  | { readonly kind: "still_open"; readonly conn: string }
  | { readonly kind: "close"; readonly conn: string }
  | { readonly kind: "sleep"; readonly seconds: number };

/** A step with where it came from, for messages. */
export type SourcedStep = Step & {
  /** 1-based line number in the file. */
  readonly lineNumber: number;
  /** The line as written in the file. */
  readonly source: string;
};

/** A parsed transcript. */
export interface Transcript {
  /** Name used in messages, e.g. `original/basics.txt`. */
  readonly name: string;
  /** `# key: value` header lines (e.g. `dialect` → `original`). */
  readonly headers: ReadonlyMap<string, string>;
  readonly steps: readonly SourcedStep[];
}

/**
 * A `debug` SESSION line without the fields the bundled server adds at the
 * end of the reference server's object: `"peer"` (the connection's
 * `host:port`) and `"name"` (the client's name).
 */
function withoutExtensions(line: string | null): string | null {
  return line?.replace(/,"peer":"[^"\\]*"(?:,"name":"(?:[^"\\]|\\.)*")?\}(\r?)$/, "}$1") ??
    null;
}

/** Options of {@linkcode replayTranscript}. */
export interface ReplayOptions {
  /**
   * The server hands out ids 1, 2, 3... in the order connections are opened
   * (as the reference servers did on a fresh start): the id bound by
   * `200 {X}` must then be exactly the connection's opening number, and
   * `SESSION` lines of `debug` must equal the transcript byte for byte (less
   * the bundled server's additions at their end, `"peer"` and `"name"`).
   * Otherwise ids are opaque and `SESSION` lines are checked loosely.
   */
  readonly sequentialIds: boolean;
  /** How long a `X<` or `X! eof` step waits, in ms (default 5000). */
  readonly lineTimeoutMs?: number;
}

/** What a successful replay saw. */
export interface ReplayResult {
  /** The session id bound to each placeholder letter (`A` → id). */
  readonly ids: ReadonlyMap<string, string>;
}

const QUIET_MS = 300;
const STILL_OPEN_MS = 2000;
const HOST = "127.0.0.1";

const STEP_PATTERNS: ReadonlyArray<[RegExp, (m: RegExpExecArray) => Step]> = [
  [/^([A-Z])> (.*)$/, (m) => ({ kind: "send", conn: m[1]!, text: m[2]! })],
  [/^([A-Z])< (.*)$/, (m) => ({ kind: "receive", conn: m[1]!, text: unescapeCr(m[2]!) })],
  [/^([A-Z])- quiet$/, (m) => ({ kind: "quiet", conn: m[1]! })],
  [/^([A-Z])! eof$/, (m) => ({ kind: "eof", conn: m[1]! })],
  [/^([A-Z])- still open$/, (m) => ({ kind: "still_open", conn: m[1]! })],
  [/^([A-Z]) x$/, (m) => ({ kind: "close", conn: m[1]! })],
  [/^sleep ([0-9]+(?:\.[0-9]+)?)$/, (m) => ({ kind: "sleep", seconds: Number(m[1]!) })],
];

function unescapeCr(text: string): string {
  return text.endsWith("\\r") ? `${text.slice(0, -2)}\r` : text;
}

/**
 * Parses transcript `text`. Pass the file decoded as latin1, so that every
 * byte maps to one character and sent/expected lines keep their exact bytes.
 *
 * @throws {SyntaxError} on a line that is no header and no step
 */
export function parseTranscript(name: string, text: string): Transcript {
  const headers = new Map<string, string>();
  const steps: SourcedStep[] = [];
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  lines.forEach((source, i) => {
    const lineNumber = i + 1;
    const where = `${name}:${lineNumber}`;
    if (source.includes("\r")) {
      throw new SyntaxError(`${where}: raw CR in a transcript line (write a CR as \\r)`);
    }
    if (source.startsWith("#")) {
      const header = /^#\s*([A-Za-z_-]+):\s*(.*)$/.exec(source);
      if (header !== null && !headers.has(header[1]!)) headers.set(header[1]!, header[2]!);
      return;
    }
    for (const [pattern, make] of STEP_PATTERNS) {
      const m = pattern.exec(source);
      if (m !== null) {
        steps.push({ ...make(m), lineNumber, source });
        return;
      }
    }
    throw new SyntaxError(`${where}: not a transcript step: ${JSON.stringify(source)}`);
  });
  if (steps.length === 0) throw new SyntaxError(`${name}: no steps`);
  return { name, headers, steps };
}

/** A placeholder `{X}`. */
const PLACEHOLDER = /(#?)\{([A-Z])\}/g;

/**
 * Replays `transcript` against the eLock server on `port` (127.0.0.1).
 * Connections are opened on their first use and all closed at the end, also
 * on failure.
 *
 * @throws {AssertionError} on the first mismatch, naming the transcript, the
 * step number and the expected and actual line
 */
export async function replayTranscript(
  transcript: Transcript,
  port: number,
  options: ReplayOptions,
): Promise<ReplayResult> {
  const lineTimeoutMs = options.lineTimeoutMs ?? 5000;
  const clients = new Map<string, LineClient>();
  const closed = new Set<string>();
  /** Opening number of each connection letter (1-based). */
  const opened = new Map<string, number>();
  const ids = new Map<string, string>();
  /** Ids of the SESSION lines in the current run of them, per connection. */
  const sessionRuns = new Map<string, Set<string>>();
  let stepNumber = 0;
  let current: SourcedStep | undefined;

  const fail = (expected: string, actual: string, why?: string): never => {
    const step = current === undefined
      ? "after the last step"
      : `step ${stepNumber} (line ${current.lineNumber}: ${current.source})`;
    throw new AssertionError({
      message: `${transcript.name}, ${step}: ${why === undefined ? "" : `${why}; `}` +
        `expected ${expected}, actual ${actual}`,
      expected,
      actual,
      operator: "strictEqual",
    });
  };
  const transcriptError = (why: string): never => {
    throw new Error(
      `${transcript.name}, step ${stepNumber} (line ${current?.lineNumber}): ${why}`,
    );
  };
  const show = (line: string | null, client: LineClient): string =>
    line !== null ? JSON.stringify(line) : client.ended ? "(eof)" : "(nothing)";

  const client = async (conn: string): Promise<LineClient> => {
    if (closed.has(conn)) transcriptError(`connection ${conn} is used after "${conn} x"`);
    let c = clients.get(conn);
    if (c === undefined) {
      c = await LineClient.connect(port, HOST);
      clients.set(conn, c);
      opened.set(conn, opened.size + 1);
    }
    return c;
  };

  /**
   * `text` with every bound placeholder replaced by its id; `#{X}` in a reply
   * by the session's public name (the id itself with sequential ids).
   */
  const substitute = (text: string, reply = false): string =>
    text.replace(PLACEHOLDER, (_, hash: string, letter: string) => {
      const id = ids.get(letter);
      if (id === undefined) {
        return transcriptError(`{${letter}} is used before "${letter}< 200 {${letter}}" bound it`);
      }
      return hash + (reply && hash !== "" && !options.sequentialIds ? sessionName(id) : id);
    });

  const receive = async (conn: string, text: string): Promise<void> => {
    const c = await client(conn);
    const actual = await c.lineOrNull(lineTimeoutMs);
    const sessions = sessionRuns.get(conn) ?? new Set<string>();
    sessionRuns.set(conn, sessions);
    if (!text.startsWith("SESSION {")) sessions.clear();
    const binding = /^200 \{([A-Z])\}(\r?)$/.exec(text);
    if (binding !== null && binding[1] === conn && !ids.has(conn)) {
      bind(conn, binding[2]!, actual, c);
      return;
    }
    const expected = substitute(text, true);
    if (expected.startsWith("SESSION {") && !options.sequentialIds) {
      checkSession(expected, actual, c, sessions);
      return;
    }
    const compared = expected.startsWith("SESSION {") ? withoutExtensions(actual) : actual;
    if (compared !== expected) fail(JSON.stringify(expected), show(actual, c));
  };

  /** `conn`'s first `conn_id` reply: `200 ID` + `eol`; binds `{conn}` to ID. */
  const bind = (conn: string, eol: string, actual: string | null, c: LineClient): void => {
    if (options.sequentialIds) {
      const expected = `200 ${opened.get(conn)}${eol}`;
      if (actual !== expected) fail(JSON.stringify(expected), show(actual, c));
    }
    const what = JSON.stringify(`200 {${conn}}${eol}`);
    if (actual === null || !actual.startsWith("200 ") || !actual.endsWith(eol)) {
      return fail(what, show(actual, c));
    }
    const id = actual.slice(4, actual.length - eol.length);
    if (!/^[^\s,#]+$/.test(id)) fail(what, JSON.stringify(actual), "not a session id");
    for (const [other, otherId] of ids) {
      if (otherId === id) {
        fail(what, JSON.stringify(actual), `the same id as {${other}}, another session`);
      }
    }
    ids.set(conn, id);
  };

  /** Random ids: any JSON object whose "id" is a bound session's public name, once per `debug`. */
  const checkSession = (
    expected: string,
    actual: string | null,
    c: LineClient,
    seen: Set<string>,
  ): void => {
    const what = `a SESSION line with a JSON object whose "id" is a bound id (like ${
      JSON.stringify(expected)
    })`;
    const eol = expected.endsWith("\r") ? "\r" : "";
    if (actual === null || !actual.startsWith("SESSION ") || !actual.endsWith(eol)) {
      return fail(what, show(actual, c));
    }
    const json = actual.slice("SESSION ".length, actual.length - eol.length);
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch {
      return fail(what, JSON.stringify(actual), "not JSON");
    }
    if (
      typeof value !== "object" || value === null || Array.isArray(value) ||
      Object.getPrototypeOf(value) !== Object.prototype
    ) {
      return fail(what, JSON.stringify(actual), "not a JSON object");
    }
    const id = (value as Record<string, unknown>)["id"];
    if (typeof id !== "string" || ![...ids.values()].map(sessionName).includes(id)) {
      return fail(what, JSON.stringify(actual), "its id is no bound session's public name");
    }
    if (seen.has(id)) fail(what, JSON.stringify(actual), "a second SESSION line for this id");
    seen.add(id);
  };

  /** Fails if a line the transcript does not expect has already arrived at `c`. */
  const noUnreadLine = async (c: LineClient, why: string): Promise<void> => {
    const extra = await c.lineOrNull(0);
    if (extra !== null) fail("no further line", JSON.stringify(extra), why);
  };

  try {
    for (const step of transcript.steps) {
      stepNumber++;
      current = step;
      switch (step.kind) {
        case "send":
          (await client(step.conn)).send(substitute(step.text));
          break;
        case "receive":
          await receive(step.conn, step.text);
          break;
        case "quiet": {
          const c = await client(step.conn);
          const line = await c.lineOrNull(QUIET_MS);
          if (line !== null || c.ended) fail(`nothing within ${QUIET_MS} ms`, show(line, c));
          break;
        }
        case "eof": {
          const c = await client(step.conn);
          const line = await c.lineOrNull(lineTimeoutMs);
          if (line !== null || !c.ended) {
            fail(
              "(eof)",
              line !== null ? JSON.stringify(line) : `still open after ${lineTimeoutMs} ms`,
            );
          }
          break;
        }
        case "still_open": {
          const c = await client(step.conn);
          const line = await c.lineOrNull(STILL_OPEN_MS);
          if (line !== null || c.ended) {
            fail(`still open, nothing within ${STILL_OPEN_MS} ms`, show(line, c));
          }
          break;
        }
        case "close": {
          const c = await client(step.conn);
          await noUnreadLine(c, `a line ${step.conn} did not expect before closing`);
          await c.close();
          closed.add(step.conn);
          break;
        }
        case "sleep":
          await new Promise((resolve) => setTimeout(resolve, step.seconds * 1000));
          break;
      }
    }
    current = undefined;
    for (const [conn, c] of clients) {
      if (!closed.has(conn)) await noUnreadLine(c, `a line ${conn} did not expect`);
    }
    return { ids };
  } finally {
    await Promise.all([...clients.values()].map((c) => c.close()));
  }
}
