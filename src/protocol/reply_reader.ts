/**
 * Reads the replies of an eLock server from a byte stream, and parses the
 * data blocks of `stats` and `debug`.
 *
 * Runtime-neutral: works on any `ReadableStream<Uint8Array>`, touches no
 * socket.
 *
 * @example
 * ```ts
 * import { ReplyReader } from "./reply_reader.ts";
 *
 * const stream = new Blob(["200 Acquired\r\n409 Unavailable\n"]).stream();
 * const replies = new ReplyReader(stream);
 * await replies.read(); // { code: 200, message: "Acquired", lines: [] }
 * await replies.read(); // { code: 409, message: "Unavailable", lines: [] }
 * await replies.cancel();
 * ```
 *
 * @module
 */

import { ConnectionClosedError, ELockError, ProtocolError } from "../errors.ts";
import { encodeBinary, LineSplitter, OVERLONG_LINE, type SplitLine } from "./line_splitter.ts";

/**
 * One reply of the server.
 *
 * @example
 * ```ts
 * const reply: Reply = { code: 409, message: "Already locked by #2", lines: [] };
 * ```
 */
export interface Reply {
  /** The 3-digit code, e.g. 200. */
  code: number;
  /** The text after the code and its space; `""` when there is none. */
  message: string;
  /** The data lines of a block (`200 STATS`, `200 DEBUG`) without `END`; else empty. */
  lines: string[];
}

/** Options of {@linkcode ReplyReader}. */
export interface ReplyReaderOptions {
  /** Longest reply line accepted, in bytes without its line end. Default 1 MiB. */
  maxLineLength?: number;
  /** Most bytes of data lines accepted in one block. Default 64 MiB. */
  maxBlockBytes?: number;
}

/** Options of {@linkcode ReplyReader.read}. */
export interface ReadOptions {
  /**
   * Whether a data block follows the first line: `true` when the reply is a
   * 200, `false` never. Omitted: when the first line is `200 STATS` or
   * `200 DEBUG`.
   */
  block?: boolean;
}

/**
 * Statistics of a `stats` reply.
 *
 * @example
 * ```ts
 * const stats: Stats = { clients: 2, locks: 1, monitoring: 2 };
 * ```
 */
export interface Stats {
  /** Connected clients. */
  clients: number;
  /** Locks held. */
  locks: number;
  /** The server's `monitoring` counter. */
  monitoring: number;
}

/**
 * A lock in a `debug` reply.
 *
 * @example
 * ```ts
 * const lock: DebugLock = { key: "schema", holders: ["1", "2"], value: "read" };
 * ```
 */
export interface DebugLock {
  /** The key, as the server wrote it. */
  key: string;
  /** Its holders as the server names them, without `#` (the bundled server: public names, see `isSessionName()`). */
  holders: string[];
  /** The value of a value lock; `null` for an exclusive lock. */
  value: string | null;
}

/**
 * A waiting lock request in a `debug` reply.
 *
 * @example
 * ```ts
 * const request: DebugRequest = { session: "3", key: "schema" };
 * ```
 */
export interface DebugRequest {
  /** The waiter as the server names it, without `#` (the bundled server: its public name). */
  session: string;
  /** The key it waits for. */
  key: string;
}

/**
 * One session of a `debug` reply: the server's own JSON object. The
 * reference server prints `id`, `disposeTimeout` and `disposeTimeoutId`;
 * the bundled server prints the same, and adds `peer` and `name` when it
 * knows them (an older server's sessions simply have neither).
 *
 * @example
 * ```ts
 * const session: DebugSession = { id: 1, peer: "10.0.0.7:51234", name: "billing" };
 * ```
 */
export interface DebugSession {
  /** `host:port` the session's connection comes from (bundled server). */
  peer?: string;
  /** The name its client gave (the `name` option of `ELockClient.connect`; bundled server). */
  name?: string;
  /** The server's other fields (`id`, `disposeTimeout`, ...). */
  [field: string]: unknown;
}

/**
 * The content of a `debug` reply.
 *
 * @example
 * ```ts
 * const info: DebugInfo = {
 *   sessions: [{ id: "1" }],
 *   locks: [{ key: "k", holders: ["1"], value: null }],
 *   requests: [],
 * };
 * ```
 */
export interface DebugInfo {
  /** One JSON object per session; its fields are the server's own (see {@linkcode DebugSession}). */
  sessions: DebugSession[];
  /** The locks held. */
  locks: DebugLock[];
  /** The waiting requests. */
  requests: DebugRequest[];
}

/** Default longest reply line: 1 MiB. */
export const DEFAULT_MAX_LINE_LENGTH = 1024 * 1024;

/** Default most bytes of data lines in one block: 64 MiB. */
export const DEFAULT_MAX_BLOCK_BYTES = 64 * 1024 * 1024;

/** Lines come as Latin-1 strings: a code point over 0x7f is a non-ASCII byte. */
const NON_ASCII = /[\u0080-\u00ff]/;
const decoder = new TextDecoder();
const NO_LINES: string[] = Object.freeze([]) as unknown as string[];

/**
 * Reads replies one at a time from a stream of bytes. Accepts `\r\n` and
 * `\n` line ends; lines are decoded as UTF-8 (invalid bytes become U+FFFD).
 *
 * A {@linkcode ProtocolError} (a line too long, a line that is not `DDD` or
 * `DDD message`, a block too big) or a {@linkcode ConnectionClosedError} is
 * final: the stream is released and every later `read()` rejects with the
 * same error. Concurrent `read()` calls are served in call order.
 *
 * @example
 * ```ts
 * const stream = new Blob(["200 STATS\nSTAT clients 1\nSTAT locks 0\nSTAT monitoring 1\nEND\n"])
 *   .stream();
 * const reply = await new ReplyReader(stream).read();
 * reply.lines; // ["STAT clients 1", "STAT locks 0", "STAT monitoring 1"]
 * ```
 */
export class ReplyReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #splitter: LineSplitter;
  readonly #maxLineLength: number;
  readonly #maxBlockBytes: number;
  #lines: SplitLine[] = [];
  #next = 0;
  #failure: ELockError | null = null;
  #released = false;
  /** The last read started; a read waits for it only while one is pending. */
  #tail: Promise<unknown> = Promise.resolve();
  #pending = 0;
  /** One-line replies read lately, by line: a repeated line gets the same (frozen) reply. */
  readonly #seen = new Map<string, Reply>();
  readonly #emit = (line: SplitLine): void => {
    this.#lines.push(line);
  };

  /**
   * Takes the stream's reader.
   *
   * @param stream the bytes from the server
   * @param options limits; see {@linkcode ReplyReaderOptions}
   * @throws {RangeError} a limit is not a positive whole number
   */
  constructor(stream: ReadableStream<Uint8Array>, options: ReplyReaderOptions = {}) {
    this.#maxLineLength = positive("maxLineLength", options.maxLineLength, DEFAULT_MAX_LINE_LENGTH);
    this.#maxBlockBytes = positive("maxBlockBytes", options.maxBlockBytes, DEFAULT_MAX_BLOCK_BYTES);
    this.#splitter = new LineSplitter(this.#maxLineLength);
    this.#reader = stream.getReader();
  }

  /**
   * Bytes of an unfinished line held back while waiting for its end: never
   * more than `maxLineLength` + 1 (a longer line is dropped as it arrives).
   *
   * @example
   * ```ts
   * const replies = new ReplyReader(new Blob(["200 OK\n20"]).stream());
   * await replies.read();
   * replies.buffered; // 2 once the reader has seen "20"
   * ```
   */
  get buffered(): number {
    return this.#splitter.buffered;
  }

  /**
   * Reads the next reply.
   *
   * @param options whether a data block follows; see {@linkcode ReadOptions}
   * @returns the reply
   * @throws {ProtocolError} the bytes are not a valid reply
   * @throws {ConnectionClosedError} the stream ended (also in the middle of a
   *   reply), failed, or the reader was cancelled
   *
   * @example
   * ```ts
   * const replies = new ReplyReader(new Blob(["200 Lock acquired\n"]).stream());
   * const { code, message } = await replies.read(); // 200, "Lock acquired"
   * ```
   */
  read(options: ReadOptions = {}): Promise<Reply> {
    const block = options.block;
    const next = () => this.#readReply(block);
    // One read at a time (the usual case) starts at once, without chaining.
    const reply = this.#pending++ === 0 ? next() : this.#tail.then(next, next);
    this.#tail = reply;
    return reply;
  }

  /**
   * Stops reading: cancels the stream and releases it. Pending and later
   * reads reject with {@linkcode ConnectionClosedError}.
   *
   * @param reason passed on to the stream's `cancel()`
   *
   * @example
   * ```ts
   * const replies = new ReplyReader(new Blob(["200 OK\n"]).stream());
   * await replies.cancel("done");
   * ```
   */
  async cancel(reason?: unknown): Promise<void> {
    this.#failure ??= new ConnectionClosedError(
      "Connection closed: the reply reader was cancelled",
      reason instanceof Error ? { cause: reason } : undefined,
    );
    await this.#release(reason);
  }

  async #readReply(block: boolean | undefined): Promise<Reply> {
    try {
      if (this.#failure !== null) throw this.#failure;
      while (this.#next >= this.#lines.length) {
        // Awaited here, not in #chunk(): one promise hop less per reply.
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await this.#reader.read();
        } catch (cause) {
          throw new ConnectionClosedError("Connection closed: the stream failed", { cause });
        }
        this.#accept(chunk, false);
      }
      const first = this.#take();
      // A line seen lately (the `200 ...` of a loop): the same frozen reply again.
      const seen = block === undefined ? this.#seen.get(first) : undefined;
      if (seen !== undefined) return seen;
      const code = replyCode(first);
      if (code < 0) {
        throw new ProtocolError(`Invalid reply line: ${JSON.stringify(preview(first))}`);
      }
      const message = first.length > 4 ? first.slice(4) : "";
      const hasBlock = block ??
        (code === 200 && (message === "STATS" || message === "DEBUG"));
      if (hasBlock && code === 200) return { code, message, lines: await this.#readBlock() };
      const reply: Reply = Object.freeze({ code, message, lines: NO_LINES });
      if (block === undefined && first.length <= 64) {
        if (this.#seen.size >= 16) this.#seen.clear();
        this.#seen.set(first, reply);
      }
      return reply;
    } catch (error) {
      if (error instanceof ELockError && error !== this.#failure) {
        this.#failure ??= error;
        await this.#release(error);
      }
      throw error;
    } finally {
      this.#pending--;
    }
  }

  async #readBlock(): Promise<string[]> {
    const lines: string[] = [];
    let bytes = 0;
    for (;;) {
      while (this.#next >= this.#lines.length) this.#accept(await this.#chunk(), true);
      const line = this.#take();
      if (line === "END") return lines;
      bytes += line.length;
      if (bytes > this.#maxBlockBytes) {
        throw new ProtocolError(`Reply block too long: more than ${this.#maxBlockBytes} bytes`);
      }
      lines.push(line);
    }
  }

  /** The next chunk of the stream. */
  async #chunk(): Promise<ReadableStreamReadResult<Uint8Array>> {
    try {
      return await this.#reader.read();
    } catch (cause) {
      throw new ConnectionClosedError("Connection closed: the stream failed", { cause });
    }
  }

  /** Splits a chunk into `#lines` (all taken by now), or throws at the end of the stream. */
  #accept(chunk: ReadableStreamReadResult<Uint8Array>, inBlock: boolean): void {
    if (chunk.done) {
      const where = inBlock || this.#splitter.buffered > 0 ? ": in the middle of a reply" : "";
      throw new ConnectionClosedError(`Connection closed${where}`);
    }
    this.#lines.length = 0;
    this.#next = 0;
    this.#splitter.push(chunk.value, this.#emit);
  }

  /** Takes the next line of `#lines` (there is one), decoded. */
  #take(): string {
    const line = this.#lines[this.#next++]!;
    if (line === OVERLONG_LINE) {
      throw new ProtocolError(`Reply line too long: more than ${this.#maxLineLength} bytes`);
    }
    return NON_ASCII.test(line) ? decoder.decode(encodeBinary(line)) : line;
  }

  async #release(reason: unknown): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    this.#lines = [];
    this.#next = 0;
    try {
      await this.#reader.cancel(reason);
    } catch {
      // Already closed or errored: nothing more to release.
    }
    try {
      this.#reader.releaseLock();
    } catch {
      // A runtime that refuses while a read is pending: the stream is cancelled anyway.
    }
  }
}

/**
 * Replies from bytes pushed in (a socket's callbacks), the same as
 * {@linkcode ReplyReader} reads them from a stream, without a promise per
 * reply: `onReply` is called for each complete reply, in order, and
 * `onError` once, with a {@linkcode ProtocolError} (after which nothing
 * more is parsed) or, at {@linkcode ReplyParser.end}, a
 * {@linkcode ConnectionClosedError}.
 *
 * @example
 * ```ts
 * const replies: Reply[] = [];
 * const parser = new ReplyParser((r) => replies.push(r), (e) => console.error(e));
 * parser.push(new TextEncoder().encode("200 OK\n409 Unavailable\n"));
 * replies.map((r) => r.code); // [200, 409]
 * ```
 */
export class ReplyParser {
  readonly #splitter: LineSplitter;
  readonly #maxLineLength: number;
  readonly #maxBlockBytes: number;
  readonly #onReply: (reply: Reply) => void;
  readonly #onError: (error: ELockError) => void;
  /** A `200 STATS`/`200 DEBUG` whose data lines are being read. */
  #block: { code: number; message: string; lines: string[]; bytes: number } | null = null;
  #failed = false;
  readonly #seen = new Map<string, Reply>();
  readonly #line = (line: SplitLine): void => this.#take(line);

  /**
   * @param onReply gets each reply
   * @param onError gets the error that ends the replies
   * @param options limits; see {@linkcode ReplyReaderOptions}
   */
  constructor(
    onReply: (reply: Reply) => void,
    onError: (error: ELockError) => void,
    options: ReplyReaderOptions = {},
  ) {
    this.#maxLineLength = positive("maxLineLength", options.maxLineLength, DEFAULT_MAX_LINE_LENGTH);
    this.#maxBlockBytes = positive("maxBlockBytes", options.maxBlockBytes, DEFAULT_MAX_BLOCK_BYTES);
    this.#splitter = new LineSplitter(this.#maxLineLength);
    this.#onReply = onReply;
    this.#onError = onError;
  }

  /** Parses `bytes` (read during the call only). */
  push(bytes: Uint8Array): void {
    if (!this.#failed) this.#splitter.push(bytes, this.#line);
  }

  /** The stream ended: a {@linkcode ConnectionClosedError}, saying whether a reply was cut. */
  end(cause?: unknown): void {
    if (this.#failed) return;
    const where = this.#block !== null || this.#splitter.buffered > 0
      ? ": in the middle of a reply"
      : "";
    this.#fail(
      cause === undefined
        ? new ConnectionClosedError(`Connection closed${where}`)
        : new ConnectionClosedError("Connection closed: the stream failed", { cause }),
    );
  }

  #fail(error: ELockError): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#onError(error);
  }

  #take(split: SplitLine): void {
    if (this.#failed) return;
    if (split === OVERLONG_LINE) {
      return this.#fail(
        new ProtocolError(`Reply line too long: more than ${this.#maxLineLength} bytes`),
      );
    }
    const line = NON_ASCII.test(split) ? decoder.decode(encodeBinary(split)) : split;
    const block = this.#block;
    if (block !== null) {
      if (line === "END") {
        this.#block = null;
        return this.#onReply({ code: block.code, message: block.message, lines: block.lines });
      }
      block.bytes += line.length;
      if (block.bytes > this.#maxBlockBytes) {
        return this.#fail(
          new ProtocolError(`Reply block too long: more than ${this.#maxBlockBytes} bytes`),
        );
      }
      block.lines.push(line);
      return;
    }
    const seen = this.#seen.get(line);
    if (seen !== undefined) return this.#onReply(seen);
    const code = replyCode(line);
    if (code < 0) {
      return this.#fail(
        new ProtocolError(`Invalid reply line: ${JSON.stringify(preview(line))}`),
      );
    }
    const message = line.length > 4 ? line.slice(4) : "";
    if (code === 200 && (message === "STATS" || message === "DEBUG")) {
      this.#block = { code, message, lines: [], bytes: 0 };
      return;
    }
    const reply: Reply = Object.freeze({ code, message, lines: NO_LINES });
    if (line.length <= 64) {
      if (this.#seen.size >= 16) this.#seen.clear();
      this.#seen.set(line, reply);
    }
    this.#onReply(reply);
  }
}

/** The code of a reply line `DDD` or `DDD message`, or -1 when it is neither. */
function replyCode(line: string): number {
  if (line.length < 3 || (line.length > 3 && line.charCodeAt(3) !== 32)) return -1;
  let code = 0;
  for (let i = 0; i < 3; i++) {
    const digit = line.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    code = code * 10 + digit;
  }
  return code;
}

/**
 * The first line of a reply as the server sent it, without its line end.
 *
 * @param reply the reply
 * @returns `CODE MESSAGE`, or just `CODE` when there is no message
 *
 * @example
 * ```ts
 * replyLine({ code: 409, message: "Unavailable", lines: [] }); // "409 Unavailable"
 * ```
 */
export function replyLine(reply: Reply): string {
  return reply.message === "" ? String(reply.code) : `${reply.code} ${reply.message}`;
}

/**
 * Parses the data lines of a `stats` reply (`STAT NAME N`).
 *
 * @param reply a `200 STATS` reply
 * @returns the counters
 * @throws {ProtocolError} a line is not `STAT NAME N`, or a counter is missing
 *
 * @example
 * ```ts
 * parseStats({
 *   code: 200,
 *   message: "STATS",
 *   lines: ["STAT clients 2", "STAT locks 2", "STAT monitoring 2"],
 * }); // { clients: 2, locks: 2, monitoring: 2 }
 * ```
 */
export function parseStats(reply: Reply): Stats {
  const counters = new Map<string, number>();
  for (const line of reply.lines) {
    const match = /^STAT ([^ ]+) ([0-9]{1,15})$/.exec(line);
    if (match === null) {
      throw new ProtocolError(`Invalid stats line: ${JSON.stringify(preview(line))}`);
    }
    counters.set(match[1]!, Number(match[2]));
  }
  const counter = (name: string): number => {
    const value = counters.get(name);
    if (value === undefined) throw new ProtocolError(`Invalid stats reply: no "${name}" counter`);
    return value;
  };
  return {
    clients: counter("clients"),
    locks: counter("locks"),
    monitoring: counter("monitoring"),
  };
}

/**
 * Parses the data lines of a `debug` reply: `SESSION {json}`,
 * `LOCK KEY #ID[, #ID] [(VALUE)]` and `REQUEST #ID KEY`. Lines of other
 * kinds are skipped.
 *
 * @param reply a `200 DEBUG` reply
 * @returns sessions, locks and waiting requests
 * @throws {ProtocolError} a `SESSION` line is not a JSON object, or a `LOCK`
 *   or `REQUEST` line is malformed
 *
 * @example
 * ```ts
 * parseDebug({
 *   code: 200,
 *   message: "DEBUG",
 *   lines: ['SESSION {"id":1}', "LOCK v #1, #2 (red)", "REQUEST #3 v"],
 * });
 * // {
 * //   sessions: [{ id: 1 }],
 * //   locks: [{ key: "v", holders: ["1", "2"], value: "red" }],
 * //   requests: [{ session: "3", key: "v" }],
 * // }
 * ```
 */
export function parseDebug(reply: Reply): DebugInfo {
  const info: DebugInfo = { sessions: [], locks: [], requests: [] };
  for (const line of reply.lines) {
    const space = line.indexOf(" ");
    const kind = space === -1 ? line : line.slice(0, space);
    if (kind === "SESSION") {
      info.sessions.push(parseSession(line));
    } else if (kind === "LOCK") {
      const match = /^LOCK ([^ ]+)(?: (#[^ ,]+(?:, #[^ ,]+)*))?(?: \(([^]*)\))?$/.exec(line);
      if (match === null) throw invalidDebugLine(line);
      const holders = match[2] === undefined ? [] : match[2].split(", ").map((h) => h.slice(1));
      info.locks.push({ key: match[1]!, holders, value: match[3] ?? null });
    } else if (kind === "REQUEST") {
      const match = /^REQUEST #([^ ]+) ([^ ]+)$/.exec(line);
      if (match === null) throw invalidDebugLine(line);
      info.requests.push({ session: match[1]!, key: match[2]! });
    }
  }
  return info;
}

function parseSession(line: string): DebugSession {
  let session: unknown;
  try {
    session = JSON.parse(line.slice("SESSION ".length));
  } catch (cause) {
    throw invalidDebugLine(line, cause);
  }
  if (typeof session !== "object" || session === null || Array.isArray(session)) {
    throw invalidDebugLine(line);
  }
  const fields = session as DebugSession;
  // `peer` and `name` are strings or absent (a server's other kinds are dropped).
  if (fields.peer !== undefined && typeof fields.peer !== "string") delete fields.peer;
  if (fields.name !== undefined && typeof fields.name !== "string") delete fields.name;
  return fields;
}

function invalidDebugLine(line: string, cause?: unknown): ProtocolError {
  return new ProtocolError(
    `Invalid debug line: ${JSON.stringify(preview(line))}`,
    cause === undefined ? undefined : { cause },
  );
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`Invalid ${name}: ${String(value)} is not a positive whole number`);
  }
  return value;
}

/** Shortens a line for an error message. */
function preview(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
