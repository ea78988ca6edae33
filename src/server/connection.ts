/**
 * Serves one client connection: reads command lines from a web
 * `ReadableStream`, runs them against the {@linkcode LockTable} strictly in
 * order, and writes the replies to a web `WritableStream`.
 *
 * @module
 */

import {
  encodeBinary,
  LineSplitter,
  OVERLONG_LINE,
  type SplitLine,
} from "../protocol/line_splitter.ts";
import { MAX_TIMEOUT_MS, MAX_WAIT_SECONDS } from "../protocol/limits.ts";
import type { DialectReplies } from "./dialect.ts";
import type { LockResult, LockTable, Session } from "./lock_table.ts";

/**
 * A byte stream to one client, as a listener adapter hands it over.
 *
 * @example
 * ```ts
 * const pipe = new TransformStream<Uint8Array, Uint8Array>();
 * const conn: ServerConnection = {
 *   readable: pipe.readable,
 *   writable: pipe.writable,
 *   remoteAddress: "127.0.0.1:50000",
 *   close() {},
 *   abort() {},
 * };
 * ```
 */
export interface ServerConnection {
  /** Bytes from the client. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the client. */
  readonly writable: WritableStream<Uint8Array>;
  /** `host:port` of the client, for logs. */
  readonly remoteAddress: string;
  /** Ends the connection once the bytes already written are sent. */
  close(): void;
  /** Closes the socket at once, dropping unsent bytes. */
  abort(): void;
}

/**
 * Something the server did, for logs.
 *
 * @example
 * ```ts
 * const log = (event: ServerEvent) => {
 *   if (event.type === "wait") console.log(`#${event.session} waits for ${event.key}`);
 * };
 * ```
 */
export type ServerEvent =
  | { readonly type: "connect"; readonly session: string; readonly remote: string }
  | {
    readonly type: "disconnect";
    readonly session: string;
    readonly remote: string;
    readonly held: number;
  }
  | { readonly type: "resume"; readonly session: string; readonly remote: string }
  /** A `lock`/`lock_value` could not be granted at once and now waits in the key's queue. */
  | { readonly type: "wait"; readonly session: string; readonly key: string }
  | {
    readonly type: "command";
    readonly session: string;
    readonly line: string;
    readonly reply: string;
  };

/** What every connection of one server shares. */
export interface ConnectionContext {
  readonly table: LockTable;
  readonly replies: DialectReplies;
  readonly maxLineLength: number;
  readonly onEvent?: ((event: ServerEvent) => void) | undefined;
}

/**
 * Bytes of commands queued (behind a waiting lock, or while the client does
 * not read its replies) before the handler stops reading from the socket.
 * Reading on until then lets a disconnect be seen while a lock waits.
 */
const MAX_QUEUED_BYTES = 1 << 20;
/**
 * While a lock waits, the handler reads on (so that a disconnect withdraws
 * the wait at once) up to this many queued bytes; a client that pipelines
 * more than this behind a waiting lock is disconnected.
 */
const MAX_QUEUED_BYTES_WAITING = 8 << 20;
const WHOLE_NUMBER = /^[0-9]{1,10}$/;

/**
 * Serves `conn` until the client leaves or the socket breaks; resolves once
 * the session has been detached and the socket closed. Never rejects.
 *
 * @example
 * ```ts
 * const table = new LockTable();
 * await serveConnection(conn, { table, replies: EXTENDED, maxLineLength: 65536 });
 * ```
 */
export async function serveConnection(
  conn: ServerConnection,
  context: ConnectionContext,
): Promise<void> {
  await new SessionHandler(conn, context).run();
}

class SessionHandler {
  readonly #conn: ServerConnection;
  readonly #ctx: ConnectionContext;
  readonly #queue: SplitLine[] = [];
  #queueHead = 0;
  #queuedBytes = 0;
  #session: Session;
  #commands = 0;
  #out = "";
  #ended = false;
  #broken = false;
  /** `quit` was answered; the connection closes after the reply. */
  #quitting = false;
  #processing: Promise<void> | null = null;
  #writer: WritableStreamDefaultWriter<Uint8Array> | null = null;
  #resumeReading: (() => void) | null = null;

  constructor(conn: ServerConnection, ctx: ConnectionContext) {
    this.#conn = conn;
    this.#ctx = ctx;
    this.#session = ctx.table.createSession();
  }

  async run(): Promise<void> {
    const { table, onEvent } = this.#ctx;
    onEvent?.({ type: "connect", session: this.#session.id, remote: this.#conn.remoteAddress });
    await this.#read();
    this.#ended = true;
    table.cancelWait(this.#session);
    this.#kick();
    while (this.#processing !== null) await this.#processing;
    const held = this.#session.held.size;
    table.disconnect(this.#session);
    this.#writer?.releaseLock();
    this.#conn.close();
    onEvent?.({
      type: "disconnect",
      session: this.#session.id,
      remote: this.#conn.remoteAddress,
      held,
    });
  }

  async #read(): Promise<void> {
    const splitter = new LineSplitter(this.#ctx.maxLineLength);
    const push = (line: SplitLine) => {
      this.#queue.push(line);
      this.#queuedBytes += line === OVERLONG_LINE ? 1 : line.length + 1;
    };
    const reader = this.#conn.readable.getReader();
    try {
      while (!this.#ended) {
        if (this.#queuedBytes >= MAX_QUEUED_BYTES) {
          if (this.#session.waiting === null) {
            await new Promise<void>((resolve) => this.#resumeReading = resolve);
            continue;
          }
          if (this.#queuedBytes >= MAX_QUEUED_BYTES_WAITING) {
            this.#conn.abort();
            break;
          }
        }
        const { value, done } = await reader.read();
        if (done) break;
        splitter.push(value, push);
        this.#kick();
      }
    } catch {
      // A reset or a forced close ends the connection like an EOF.
    } finally {
      reader.releaseLock();
    }
  }

  #kick(): void {
    if (this.#processing === null && this.#queueHead < this.#queue.length) {
      this.#processing = this.#process().finally(() => {
        this.#processing = null;
        if (this.#queueHead < this.#queue.length && !this.#broken) this.#kick();
      });
    }
  }

  async #process(): Promise<void> {
    while (this.#queueHead < this.#queue.length && !this.#broken) {
      const line = this.#queue[this.#queueHead]!;
      this.#queue[this.#queueHead++] = "";
      this.#queuedBytes -= line === OVERLONG_LINE ? 1 : line.length + 1;
      if (this.#queueHead > 4096 && this.#queueHead * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#queueHead);
        this.#queueHead = 0;
      }
      if (this.#queuedBytes < MAX_QUEUED_BYTES / 2) this.#wakeReader();
      let reply = this.#execute(line);
      if (typeof reply !== "string") {
        // Read on while the lock waits, so that a disconnect is seen.
        this.#wakeReader();
        await this.#flush();
        reply = await reply;
      }
      this.#out += reply;
      this.#log(line, reply);
      if (this.#quitting) {
        // Nothing sent after `quit` runs: the client has said goodbye.
        this.#queue.length = 0;
        this.#queueHead = 0;
        this.#queuedBytes = 0;
        await this.#flush();
        this.#ended = true;
        this.#wakeReader();
        this.#conn.close();
        return;
      }
    }
    await this.#flush();
  }

  async #flush(): Promise<void> {
    if (this.#out === "" || this.#broken) return;
    const bytes = encodeBinary(this.#out);
    this.#out = "";
    try {
      this.#writer ??= this.#conn.writable.getWriter();
      await this.#writer.write(bytes);
    } catch {
      this.#broken = true;
      this.#ended = true;
      this.#wakeReader();
    }
  }

  #log(line: SplitLine, reply: string): void {
    if (this.#ctx.onEvent === undefined) return;
    let shown = line === OVERLONG_LINE ? "(line too long)" : line;
    let answer = reply.trimEnd();
    // A conn_id's argument and answer are secret ids: log their public names.
    if (shown === "conn_id" && answer.startsWith("200 ")) answer = `200 ${this.#session.id}`;
    else if (shown.startsWith("conn_id ")) {
      shown = `conn_id ${this.#ctx.table.publicName(shown.slice(8))}`;
    }
    this.#ctx.onEvent({ type: "command", session: this.#session.id, line: shown, reply: answer });
  }

  /** Lets a reader paused by a full queue go on. */
  #wakeReader(): void {
    this.#resumeReading?.();
    this.#resumeReading = null;
  }

  /** Runs one command; its reply now, or a pending reply (a waiting lock). */
  #execute(line: SplitLine): string | Promise<string> {
    const { replies, table } = this.#ctx;
    const eol = replies.eol;
    const first = this.#commands++ === 0;
    if (line === OVERLONG_LINE) return replies.lineTooLong + eol;
    const words = line.split(" ");
    const command = words[0]!;
    const argc = words.length - 1;
    if (words.includes("")) return replies.unknown(command) + eol;
    const session = this.#session;
    switch (`${command}/${argc}`) {
      case "lock/1":
      case "lock/2":
        return this.#lock(words[1]!, null, words[2]);
      case "lock_value/2":
      case "lock_value/3":
        if (!replies.hasValueLocks) break;
        return this.#lock(words[1]!, words[2]!, words[3]);
      case "unlock/1":
        return replies.unlock(table.unlock(session, words[1]!)) + eol;
      case "fence/1":
        // This server's extension: the fencing token of a key the session holds.
        return replies.fence(table.fence(session, words[1]!)) + eol;
      case "unlock_all/0":
        table.unlockAll(session);
        return replies.unlockAll + eol;
      case "conn_id/0":
        return `200 ${session.secret}${eol}`;
      case "conn_id/1": {
        if (replies.resumeFirstOnly && !first) return replies.resume("active") + eol;
        const { result, session: next } = table.resume(session, words[1]!);
        if (result === "resumed") {
          this.#session = next;
          this.#ctx.onEvent?.({
            type: "resume",
            session: next.id,
            remote: this.#conn.remoteAddress,
          });
        }
        return replies.resume(result) + eol;
      }
      case "set_timeout/1": {
        const ms = parseWhole(words[1]!, MAX_TIMEOUT_MS);
        if (ms === null) return replies.badNumber(words[1]!) + eol;
        session.releaseTimeout = ms;
        return replies.setTimeout + eol;
      }
      case "stats/0": {
        const sessions = table.sessions.size;
        return [
          "200 STATS",
          `STAT clients ${sessions}`,
          `STAT locks ${table.lockCount}`,
          `STAT monitoring ${sessions}`,
          "END",
        ].join(eol) + eol;
      }
      case "debug/0":
        if (!replies.hasDebug) break;
        return debugLines(table).join(eol) + eol;
      case "quit/0":
        // The original server closes the connection (locks then follow the
        // disconnect rule); the extended one releases every lock.
        if (replies.quitCloses) this.#quitting = true;
        else table.unlockAll(session);
        return replies.quit + eol;
    }
    return replies.unknown(command) + eol;
  }

  #lock(key: string, value: string | null, wait: string | undefined): string | Promise<string> {
    const { replies, table } = this.#ctx;
    let seconds = 0;
    if (wait !== undefined) {
      const parsed = parseWhole(wait, MAX_WAIT_SECONDS);
      if (parsed === null) return replies.badNumber(wait) + replies.eol;
      seconds = parsed;
    }
    // Once the client has gone, nothing may wait on its behalf.
    const result = table.lock(this.#session, key, value, this.#ended ? 0 : seconds * 1000);
    const format = (r: LockResult) => replies.lock(r) + replies.eol;
    if (result instanceof Promise) {
      this.#ctx.onEvent?.({ type: "wait", session: this.#session.id, key });
    }
    return result instanceof Promise ? result.then(format) : format(result);
  }
}

function parseWhole(text: string, max: number): number | null {
  if (!WHOLE_NUMBER.test(text)) return null;
  const n = Number(text);
  return n <= max ? n : null;
}

function debugLines(table: LockTable): string[] {
  const now = Date.now();
  const lines = ["200 DEBUG"];
  for (const s of table.sessions.values()) {
    const id = /^[1-9][0-9]{0,14}$/.test(s.id) ? s.id : JSON.stringify(s.id);
    const tail = s.connected ? "null" : `1,"expiresIn":${Math.max(0, s.expiresAt - now)}`;
    lines.push(
      `SESSION {"id":${id},"disposeTimeout":${s.releaseTimeout},"disposeTimeoutId":${tail}}`,
    );
  }
  const requests: string[] = [];
  for (const state of table.keys.values()) {
    if (state.holders.size > 0) {
      const who = [...state.holders].map((s) => `#${s.id}`).join(", ");
      lines.push(`LOCK ${state.key} ${who}${state.value === null ? "" : ` (${state.value})`}`);
    }
    for (const w of state.queue) requests.push(`REQUEST #${w.session.id} ${w.key}`);
  }
  lines.push(...requests, "END");
  return lines;
}
