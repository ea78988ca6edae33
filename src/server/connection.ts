/**
 * Serves one client connection: reads command lines from a web
 * `ReadableStream`, runs them against the lock table (a {@linkcode LockStore}:
 * the in-memory {@linkcode LockTable}, whose answers are plain values, or
 * the etcd store, whose answers are promises) strictly in order, and writes
 * the replies to a web `WritableStream`. A store operation that fails
 * (etcd unreachable) is answered with an error line
 * (`500 Lock store unavailable`, original dialect `400 ...`); the connection
 * stays usable.
 *
 * @module
 */

import {
  encodeBinary,
  LineSplitter,
  OVERLONG_LINE,
  type SplitLine,
} from "../protocol/line_splitter.ts";
import { isClientName, MAX_TIMEOUT_MS, MAX_WAIT_SECONDS } from "../protocol/limits.ts";
import type { DialectReplies } from "./dialect.ts";
import { LockTable } from "./lock_table.ts";
import type { LockResult, Session, UnlockResult } from "./lock_table.ts";
import type { LockStore, MaybePromise, StoreDebug, StoreSession } from "./store.ts";

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
  /**
   * The socket's own callbacks, which the server then uses instead of
   * `readable` and `writable` (fewer allocations and promise hops per
   * command); the bundled listeners provide it, a custom one need not.
   */
  readonly raw?: RawServerSocket;
}

/**
 * A socket seen through callbacks, for {@linkcode ServerConnection.raw}.
 *
 * @example
 * ```ts
 * import { Socket } from "node:net";
 *
 * declare const socket: Socket;
 * const raw: RawServerSocket = {
 *   start(onData, onEnd) {
 *     socket.on("data", onData).on("end", onEnd).on("close", onEnd);
 *   },
 *   write: (bytes) => socket.write(bytes),
 *   drained: () => new Promise((resolve) => socket.once("drain", resolve)),
 *   pause: () => void socket.pause(),
 *   resume: () => void socket.resume(),
 * };
 * ```
 */
export interface RawServerSocket {
  /**
   * Starts reading: `onData` for each chunk (it may be reused once
   * `onData` returns), `onEnd` once the peer has ended, the socket has
   * failed or it has closed (it may be called more than once).
   */
  start(onData: (chunk: Uint8Array) => void, onEnd: () => void): void;
  /**
   * Writes `bytes`; `false` if not all of them have been taken yet: then
   * wait for {@linkcode RawServerSocket.drained}. Throws once the socket is closed.
   */
  write(bytes: Uint8Array): boolean;
  /** Resolves once the bytes of the last write have been taken; rejects if the socket closes first. */
  drained(): Promise<void>;
  /** Stops `onData` until `resume`. */
  pause(): void;
  /** Lets `onData` go on after `pause`. */
  resume(): void;
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
  }
  /**
   * A `force_unlock KEY` (this server's extension): `released` (the public
   * names of the sessions that held it are `holders`), `not_locked`, or
   * `refused` (the server was not started with `admin`).
   */
  | {
    readonly type: "force_unlock";
    readonly session: string;
    readonly remote: string;
    readonly key: string;
    readonly outcome: "released" | "not_locked" | "refused";
    readonly holders: readonly string[];
  };

/**
 * Counters of one server that no table holds (see `stats`).
 *
 * @example
 * ```ts
 * const counters: ServerCounters = { refusedConnections: 0 };
 * ```
 */
export interface ServerCounters {
  /** Connections refused because `maxConnections` were open. */
  refusedConnections: number;
}

/** What every connection of one server shares. */
export interface ConnectionContext {
  readonly table: LockStore;
  readonly replies: DialectReplies;
  readonly maxLineLength: number;
  /** Longest reply built, in bytes; a longer one is answered with an error line. */
  readonly maxReplyBytes: number;
  /** Closes a connection that has sent nothing for this long, in ms, unless it waits; 0: never. */
  readonly idleTimeoutMs: number;
  readonly counters: ServerCounters;
  readonly onEvent?: ((event: ServerEvent) => void) | undefined;
  /** Also report every command to `onEvent`. */
  readonly logCommands?: boolean;
  /** Accept operator commands (`force_unlock`); default: refuse them. */
  readonly admin?: boolean;
}

/**
 * Bytes of commands queued (while the client does not read its replies, or
 * behind a waiting lock) before the handler stops reading from the socket;
 * each line counts {@linkcode LINE_COST} bytes more than its length, for the
 * string and its queue slot.
 */
const MAX_QUEUED_BYTES = 64 << 10;
/**
 * While a lock waits the handler reads on, so that a disconnect withdraws
 * the wait at once, up to this many bytes queued (counted as above); a
 * client that sends more behind a waiting lock is disconnected.
 */
const MAX_PARKED_BYTES = 1 << 20;
const LINE_COST = 48;
/** Replies are written once this many bytes of them are pending, or the batch read is done. */
const WRITE_CHUNK = 64 << 10;
/** How long a connection that said `quit`, or was refused, may stay before it is aborted. */
const CLOSE_GRACE_MS = 1000;
const WHOLE_NUMBER = /^[0-9]{1,10}$/;

/**
 * Serves `conn` until the client leaves or the socket breaks; resolves once
 * the session has been detached and the socket closed. Never rejects.
 *
 * @example
 * ```ts
 * const table = new LockTable();
 * await serveConnection(conn, {
 *   table,
 *   replies: EXTENDED,
 *   maxLineLength: 65536,
 *   maxReplyBytes: 4 << 20,
 *   idleTimeoutMs: 0,
 *   counters: { refusedConnections: 0 },
 * });
 * ```
 */
export function serveConnection(
  conn: ServerConnection,
  context: ConnectionContext,
): Promise<void> {
  return new SessionHandler(conn, context).run();
}

/**
 * Refuses `conn`: writes `line` (with the dialect's line end), half-closes,
 * drops what the client still sends, and aborts the socket if the client has
 * not closed its side within a second. Never rejects.
 *
 * @example
 * ```ts
 * await refuseConnection(conn, EXTENDED, "Too many connections");
 * ```
 */
export async function refuseConnection(
  conn: ServerConnection,
  replies: DialectReplies,
  message: string,
): Promise<void> {
  const timer = setTimeout(() => conn.abort(), CLOSE_GRACE_MS);
  const raw = conn.raw;
  if (raw !== undefined) {
    try {
      await new Promise<void>((resolve) => {
        // What the client still sends is dropped.
        raw.start(() => {}, resolve);
        raw.write(encodeBinary(errorLine(replies, message)));
        conn.close();
      });
    } catch {
      conn.abort();
    } finally {
      clearTimeout(timer);
    }
    return;
  }
  try {
    const writer = conn.writable.getWriter();
    await writer.write(encodeBinary(errorLine(replies, message)));
    writer.releaseLock();
    conn.close();
    const reader = conn.readable.getReader();
    while (!(await reader.read()).done) {
      // Dropped: unread bytes would make the kernel reset the connection.
    }
  } catch {
    conn.abort();
  } finally {
    clearTimeout(timer);
  }
}

/** An error reply in the dialect's wording: the code its other errors use, then `message`. */
function errorLine(replies: DialectReplies, message: string): string {
  return `${replies.lineTooLong.slice(0, 4)}${message}${replies.eol}`;
}

/** Replies of a dialect that do not depend on the state, built once per dialect (not per connection). */
interface FixedReplies {
  readonly eol: string;
  readonly acquired: string;
  readonly released: string;
  readonly tooLarge: string;
  /** `acquired` and `released` as bytes, written as they are (never changed). */
  readonly acquiredBytes: Uint8Array;
  readonly releasedBytes: Uint8Array;
}

const fixedReplies = new WeakMap<DialectReplies, FixedReplies>();

function fixedOf(replies: DialectReplies): FixedReplies {
  let fixed = fixedReplies.get(replies);
  if (fixed === undefined) {
    const acquired = replies.lock({ kind: "acquired" }) + replies.eol;
    const released = replies.unlock({ kind: "released" }) + replies.eol;
    fixed = {
      eol: replies.eol,
      acquired,
      released,
      tooLarge: errorLine(replies, "Reply too large"),
      acquiredBytes: encodeBinary(acquired),
      releasedBytes: encodeBinary(released),
    };
    fixedReplies.set(replies, fixed);
  }
  return fixed;
}

const costOf = (line: SplitLine): number =>
  LINE_COST + (line === OVERLONG_LINE ? 0 : line.length + 1);

class SessionHandler {
  readonly #conn: ServerConnection;
  readonly #ctx: ConnectionContext;
  readonly #fixed: FixedReplies;
  #queue: SplitLine[] = [];
  #queueHead = 0;
  #queuedBytes = 0;
  #session!: StoreSession;
  /** The session being created (a store that answers with promises). */
  #creating: Promise<StoreSession> | null = null;
  /** The detach of the session, once started (awaited before `run()` resolves). */
  #detaching: MaybePromise<void> = undefined;
  readonly #storeErrorReply: string;
  #commands = 0;
  /** Replies not written yet. */
  #out = "";
  /** No command is read any more (the client has gone, or said `quit`). */
  #ended = false;
  /** A write failed: nothing more is written, and what is read is dropped. */
  #broken = false;
  /** `quit` was answered; the connection closes after the reply. */
  #quitting = false;
  #detached = false;
  #held = 0;
  #processing: Promise<void> | null = null;
  #writer: WritableStreamDefaultWriter<Uint8Array> | null = null;
  #resumeReading: (() => void) | null = null;
  /**
   * A lock with a wait is pending (on the memory table it waits; a store
   * registers the wait only once etcd has answered): reading goes on, up to
   * the parking bound, so that a disconnect is seen.
   */
  #lockWaits = false;
  #lastInput = 0;
  /** An unlock of this batch granted a waiter (see #runNow). */
  #handedOver = false;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(conn: ServerConnection, ctx: ConnectionContext) {
    this.#conn = conn;
    this.#ctx = ctx;
    this.#fixed = fixedOf(ctx.replies);
    this.#storeErrorReply = errorLine(ctx.replies, "Lock store unavailable");
    const created = ctx.table.createSession(conn.remoteAddress);
    if (created instanceof Promise) {
      this.#creating = created;
      // Nothing is read before the session exists (some listeners hand
      // bytes that come before `start` to their streams).
      conn.raw?.pause();
    } else this.#session = created;
  }

  async run(): Promise<void> {
    const { table, onEvent, idleTimeoutMs } = this.#ctx;
    if (this.#creating !== null) {
      try {
        this.#session = await this.#creating;
        this.#watchLoss();
      } catch {
        // No session (the store is unreachable): say so, and close.
        await refuseConnection(this.#conn, this.#ctx.replies, "Lock store unavailable");
        return;
      }
    }
    onEvent?.({ type: "connect", session: this.#session.id, remote: this.#conn.remoteAddress });
    if (idleTimeoutMs > 0) {
      this.#lastInput = Date.now();
      this.#armIdleTimer(idleTimeoutMs);
    }
    await this.#read();
    this.#ended = true;
    table.cancelWait(this.#session);
    this.#kick();
    while (this.#processing !== null) await this.#processing;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#graceTimer);
    this.#detach();
    if (this.#detaching instanceof Promise) await this.#detaching.catch(() => {});
    this.#writer?.releaseLock();
    this.#conn.close();
    onEvent?.({
      type: "disconnect",
      session: this.#session.id,
      remote: this.#conn.remoteAddress,
      held: this.#held,
    });
  }

  /** A session the store loses (its etcd lease ran out) ends the connection: the client learns it at once. */
  #watchLoss(): void {
    this.#session.onLost = () => this.#conn.abort();
  }

  /** Detaches the session from the connection (once): its release timeout starts. */
  #detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    this.#held = this.#session.held.size;
    this.#detaching = this.#ctx.table.disconnect(this.#session);
  }

  /**
   * `format` of a store answer: now for a plain value, later for a promise.
   * A failed store operation answers the store error line; a session the
   * store lost (its lease gone) then ends the connection, so the client
   * learns it at once.
   */
  #then<T>(answer: MaybePromise<T>, format: (value: T) => string): string | Promise<string> {
    if (!(answer instanceof Promise)) return format(answer);
    return answer.then(format, () => {
      if (this.#session.lost === true) {
        this.#quitting = true;
      }
      return this.#storeErrorReply;
    });
  }

  /** Reads through the socket's callbacks until the connection ends. */
  #readRaw(raw: RawServerSocket): Promise<void> {
    const splitter = new LineSplitter(this.#ctx.maxLineLength);
    const push = (line: SplitLine) => {
      if (this.#ended || this.#broken) return;
      this.#queue.push(line);
      this.#queuedBytes += costOf(line);
    };
    const watchIdle = this.#ctx.idleTimeoutMs > 0;
    const resume = () => raw.resume();
    return new Promise<void>((resolve) => {
      let done = false;
      raw.start((chunk) => {
        if (done) return;
        if (watchIdle) this.#lastInput = Date.now();
        splitter.push(chunk, push);
        // Runs the batch at once, and writes its replies in one write.
        this.#kick();
        if (this.#queuedBytes >= MAX_QUEUED_BYTES && !this.#ended && !this.#broken) {
          if (!this.#lockWaits) {
            // Behind: read no more until the queue has shrunk.
            this.#resumeReading = resume;
            raw.pause();
          } else if (this.#queuedBytes >= MAX_PARKED_BYTES) {
            // See #read: a client must not send behind a waiting lock.
            this.#conn.abort();
          }
        }
      }, () => {
        if (done) return;
        done = true;
        resolve();
      });
      if (this.#creating !== null) raw.resume();
    });
  }

  #read(): Promise<void> {
    if (this.#conn.raw !== undefined) return this.#readRaw(this.#conn.raw);
    return this.#readStreams();
  }

  async #readStreams(): Promise<void> {
    const splitter = new LineSplitter(this.#ctx.maxLineLength);
    const push = (line: SplitLine) => {
      // Nothing runs after `quit`, nor once replies can no longer be sent.
      if (this.#ended || this.#broken) return;
      this.#queue.push(line);
      this.#queuedBytes += costOf(line);
    };
    const watchIdle = this.#ctx.idleTimeoutMs > 0;
    const reader = this.#conn.readable.getReader();
    try {
      for (;;) {
        if (this.#queuedBytes >= MAX_QUEUED_BYTES && !this.#ended && !this.#broken) {
          if (!this.#lockWaits) {
            // Behind (a client that does not read its replies, or a burst):
            // read no more until the queue has shrunk.
            await new Promise<void>((resolve) => this.#resumeReading = resolve);
            continue;
          }
          // A lock waits: read on, so that a disconnect withdraws the wait at
          // once, but only so far. A client must not send behind a waiting
          // lock at all (PROTOCOL.md: a waiting lock is a barrier).
          if (this.#queuedBytes >= MAX_PARKED_BYTES) {
            this.#conn.abort();
            break;
          }
        }
        const { value, done } = await reader.read();
        if (done) break;
        if (watchIdle) this.#lastInput = Date.now();
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
      // Commands whose replies come at once run here, without a promise;
      // the rest (a waiting lock, a write the socket is behind on) goes on
      // asynchronously.
      const rest = this.#runNow();
      if (rest === null) return;
      this.#processing = rest.finally(() => {
        this.#processing = null;
        if (this.#queueHead < this.#queue.length && !this.#broken) this.#kick();
      });
    }
  }

  /** Takes the next queued line. */
  #next(): SplitLine {
    const line = this.#queue[this.#queueHead]!;
    this.#queue[this.#queueHead++] = "";
    this.#queuedBytes -= costOf(line);
    if (this.#queueHead === this.#queue.length) {
      this.#queue.length = 0;
      this.#queueHead = 0;
    } else if (this.#queueHead > 4096 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#queueHead);
      this.#queueHead = 0;
    }
    if (this.#queuedBytes < MAX_QUEUED_BYTES / 2) this.#wakeReader();
    return line;
  }

  /**
   * Runs queued commands while each reply comes at once, then writes their
   * replies in one write; null when that is all done, else the promise of
   * the rest ({@linkcode SessionHandler.#process}).
   */
  #runNow(): Promise<void> | null {
    const logCommands = this.#ctx.logCommands === true && this.#ctx.onEvent !== undefined;
    while (this.#queueHead < this.#queue.length && !this.#broken) {
      const line = this.#next();
      const reply = this.#execute(line);
      if (typeof reply !== "string" || this.#quitting) return this.#process(line, reply);
      this.#out += reply;
      if (logCommands) this.#log(line, reply);
      if (this.#out.length >= WRITE_CHUNK) {
        const behind = this.#write();
        if (behind !== null) return behind.then(() => this.#process(null, ""));
      }
    }
    if (this.#handedOver) {
      // An unlock gave the key to a waiter: its grant (a few promise hops
      // away) is written first, this reply after it; the grant is what the
      // next hand-off waits for.
      this.#handedOver = false;
      return afterGrants().then(() => this.#write() ?? undefined);
    }
    return this.#write();
  }

  /** Goes on from `line`'s reply (pending, or `quit`'s), then runs the queue. */
  async #process(first: SplitLine | null, firstReply: string | Promise<string>): Promise<void> {
    const logCommands = this.#ctx.logCommands === true && this.#ctx.onEvent !== undefined;
    let line = first;
    let pending: string | Promise<string> = firstReply;
    while (line !== null) {
      let reply = pending;
      if (typeof reply !== "string") {
        // Read on while the lock waits, so that a disconnect is seen; the
        // replies before the waiting lock go now.
        this.#wakeReader();
        await this.#flush();
        reply = await reply;
      }
      this.#out += reply;
      if (logCommands) this.#log(line, reply);
      if (this.#quitting) {
        // Nothing runs after `quit`: the client has said goodbye. The
        // session is detached at once (its release timeout starts), even if
        // the client keeps its side of the connection open.
        this.#ended = true;
        this.#queue = [];
        this.#queueHead = 0;
        this.#queuedBytes = 0;
        this.#detach();
        this.#wakeReader();
        await this.#flush();
        this.#conn.close();
        this.#graceTimer = setTimeout(() => this.#conn.abort(), CLOSE_GRACE_MS);
        return;
      }
      // A client that does not read its replies holds this handler here,
      // and then its reader, once the queue is full.
      if (this.#out.length >= WRITE_CHUNK) await this.#flush();
      if (this.#queueHead >= this.#queue.length || this.#broken) break;
      line = this.#next();
      pending = this.#execute(line);
    }
    await this.#flush();
  }

  async #flush(): Promise<void> {
    await this.#write();
  }

  /** Writes the replies not written yet; a promise while the socket is behind, else null. */
  #write(): Promise<void> | null {
    if (this.#out === "") return null;
    const out = this.#out;
    this.#out = "";
    if (this.#broken) return null;
    const raw = this.#conn.raw;
    if (raw === undefined) return this.#writeStream(out);
    try {
      const fixed = this.#fixed;
      // The two commonest replies are written from bytes built once.
      const bytes = out === fixed.acquired
        ? fixed.acquiredBytes
        : out === fixed.released
        ? fixed.releasedBytes
        : encodeBinary(out);
      if (raw.write(bytes)) return null;
      return raw.drained().catch(() => this.#fail());
    } catch {
      this.#fail();
      return null;
    }
  }

  async #writeStream(out: string): Promise<void> {
    try {
      this.#writer ??= this.#conn.writable.getWriter();
      await this.#writer.write(encodeBinary(out));
    } catch {
      this.#fail();
    }
  }

  /** A write failed: nothing more is written, and what is read is dropped. */
  #fail(): void {
    this.#broken = true;
    this.#queue = [];
    this.#queueHead = 0;
    this.#queuedBytes = 0;
    this.#wakeReader();
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
    const resume = this.#resumeReading;
    this.#resumeReading = null;
    resume?.();
  }

  #armIdleTimer(ms: number): void {
    this.#idleTimer = setTimeout(() => {
      if (this.#ended) return;
      const limit = this.#ctx.idleTimeoutMs;
      const quiet = Date.now() - this.#lastInput;
      // A lock that waits is not idleness: the client waits for its reply.
      if (this.#session.waiting !== null) return this.#armIdleTimer(limit);
      if (quiet < limit) return this.#armIdleTimer(limit - quiet);
      this.#conn.abort();
    }, ms);
  }

  /** Runs one command; its reply now, or a pending reply (a waiting lock). */
  #execute(line: SplitLine): string | Promise<string> {
    const { replies, table } = this.#ctx;
    const eol = this.#fixed.eol;
    const first = this.#commands++ === 0;
    if (line === OVERLONG_LINE) return replies.lineTooLong + eol;
    // The commonest commands, `lock KEY [WAIT]` and `unlock KEY`, without
    // splitting the line into an array.
    const space = line.indexOf(" ");
    if (space === 4 || space === 6) {
      const end = line.indexOf(" ", space + 1);
      const last = end === -1 ? line.length : end;
      if (last > space + 1 && (end === -1 || line.indexOf(" ", end + 1) === -1)) {
        const key = line.slice(space + 1, last);
        if (space === 4 && line.startsWith("lock")) {
          if (end === -1) return this.#lock(key, null, undefined);
          if (end + 1 < line.length) return this.#lock(key, null, line.slice(end + 1));
        } else if (space === 6 && end === -1 && line.startsWith("unlock")) {
          return this.#unlock(key);
        }
      }
    }
    const words = line.split(" ");
    const command = words[0]!;
    const argc = words.length - 1;
    if (words.includes("")) return replies.unknown(command) + eol;
    const session = this.#session;
    switch (command) {
      case "lock":
        if (argc === 1 || argc === 2) return this.#lock(words[1]!, null, words[2]);
        break;
      case "unlock":
        if (argc === 1) return this.#unlock(words[1]!);
        break;
      case "lock_value":
        if (replies.hasValueLocks && (argc === 2 || argc === 3)) {
          return this.#lock(words[1]!, words[2]!, words[3]);
        }
        break;
      case "fence":
        // This server's extension: the fencing token of a key the session holds.
        if (argc === 1) {
          return this.#then(table.fence(session, words[1]!), (t) => replies.fence(t) + eol);
        }
        break;
      case "unlock_all":
        if (argc !== 0) break;
        return this.#then(table.unlockAll(session), () => replies.unlockAll + eol);
      case "conn_id": {
        if (argc === 0) return `200 ${session.secret}${eol}`;
        if (argc !== 1) break;
        if (replies.resumeFirstOnly && !first) return replies.resume("active") + eol;
        return this.#then(table.resume(session, words[1]!), ({ result, session: next }) => {
          if (result === "resumed") {
            this.#session = next;
            if (this.#creating !== null) this.#watchLoss();
            this.#ctx.onEvent?.({
              type: "resume",
              session: next.id,
              remote: this.#conn.remoteAddress,
            });
          }
          return replies.resume(result) + eol;
        });
      }
      case "set_timeout": {
        if (argc !== 1) break;
        const ms = parseWhole(words[1]!, MAX_TIMEOUT_MS);
        if (ms === null) return replies.badNumber(words[1]!) + eol;
        return this.#then(table.setReleaseTimeout(session, ms), () => replies.setTimeout + eol);
      }
      case "stats": {
        if (argc !== 0) break;
        return this.#then(table.stats(), ({ clients, locks }) => {
          const refused = this.#ctx.counters.refusedConnections;
          return "200 STATS" + eol +
            `STAT clients ${clients}${eol}` +
            `STAT locks ${locks}${eol}` +
            `STAT monitoring ${clients}${eol}` +
            // Only once there is something to say: the two reference servers
            // print the three counters above and nothing else.
            (refused > 0 ? `STAT refused_connections ${refused}${eol}` : "") +
            "END" + eol;
        });
      }
      case "debug":
        if (!replies.hasDebug || argc !== 0) break;
        if (table instanceof LockTable) {
          return debugReply(table, eol, this.#ctx.maxReplyBytes) ?? this.#fixed.tooLarge;
        }
        return this.#then(
          table.debug(),
          (d) => storeDebugReply(d, eol, this.#ctx.maxReplyBytes) ?? this.#fixed.tooLarge,
        );
      case "name":
        // This server's extension: a name for the session, shown by `debug`.
        if (argc !== 1) break;
        if (!isClientName(words[1]!)) return errorLine(replies, "Invalid name");
        return this.#then(table.setName(session, words[1]!), () => `200 OK${eol}`);
      case "force_unlock":
        // This server's extension, for operators: frees KEY whoever holds it.
        if (argc !== 1) break;
        return this.#forceUnlock(words[1]!);
      case "quit":
        if (argc !== 0) break;
        // The original server closes the connection (locks then follow the
        // disconnect rule); the extended one releases every lock.
        if (replies.quitCloses) this.#quitting = true;
        else return this.#then(table.unlockAll(session), () => replies.quit + eol);
        return replies.quit + eol;
    }
    return replies.unknown(command) + eol;
  }

  #forceUnlock(key: string): string | Promise<string> {
    const report = (outcome: "released" | "not_locked" | "refused", holders: readonly string[]) =>
      this.#ctx.onEvent?.({
        type: "force_unlock",
        session: this.#session.id,
        remote: this.#conn.remoteAddress,
        key,
        outcome,
        holders,
      });
    const eol = this.#fixed.eol;
    if (this.#ctx.admin !== true) {
      report("refused", []);
      return `403 Forbidden: force_unlock needs a server started with --admin${eol}`;
    }
    return this.#then(this.#ctx.table.forceUnlock(key), ({ holders }) => {
      if (holders.length === 0) {
        report("not_locked", []);
        return `404 Not locked${eol}`;
      }
      report("released", holders);
      if (this.#tooLarge(holders, null)) return `200 Released${eol}`;
      return `200 Released from ${holders.map((h) => `#${h}`).join(", ")}${eol}`;
    });
  }

  #unlock(key: string): string | Promise<string> {
    const table = this.#ctx.table;
    if (!(table instanceof LockTable)) {
      return this.#then(table.unlock(this.#session, key), (r) => this.#unlockReply(r));
    }
    const waiting = table.waitingCount;
    const result = table.unlock(this.#session as Session, key);
    if (result.kind === "released" && table.waitingCount < waiting) this.#handedOver = true;
    return this.#unlockReply(result);
  }

  #unlockReply(result: UnlockResult): string {
    if (result.kind === "released") return this.#fixed.released;
    if (result.kind === "not_yours" && this.#tooLarge(result.holders, null)) {
      return this.#fixed.tooLarge;
    }
    return this.#ctx.replies.unlock(result) + this.#fixed.eol;
  }

  #lock(key: string, value: string | null, wait: string | undefined): string | Promise<string> {
    const { replies, table } = this.#ctx;
    let seconds = 0;
    if (wait !== undefined) {
      const parsed = parseWhole(wait, MAX_WAIT_SECONDS);
      if (parsed === null) return replies.badNumber(wait) + this.#fixed.eol;
      seconds = parsed;
    }
    // Once the client has gone, nothing may wait on its behalf.
    const result = table.lock(this.#session, key, value, this.#ended ? 0 : seconds * 1000);
    if (result instanceof Promise) {
      if (table instanceof LockTable) {
        this.#ctx.onEvent?.({ type: "wait", session: this.#session.id, key });
      }
      if (seconds > 0) {
        this.#lockWaits = true;
        const done = () => void (this.#lockWaits = false);
        result.then(done, done);
      }
      return this.#then(result, (r) => this.#lockReply(r));
    }
    return this.#lockReply(result);
  }

  #lockReply(result: LockResult): string {
    switch (result.kind) {
      case "acquired":
        return this.#fixed.acquired;
      case "unavailable":
        if (this.#tooLarge(result.holders, result.value)) return this.#fixed.tooLarge;
        break;
      case "deadlock":
        if (result.path.length > this.#ctx.maxReplyBytes) return this.#fixed.tooLarge;
        break;
    }
    return this.#ctx.replies.lock(result) + this.#fixed.eol;
  }

  /** Whether a reply listing `holders` (`#ID, #ID (VALUE)`) would be longer than allowed. */
  #tooLarge(holders: readonly string[], value: string | null): boolean {
    const limit = this.#ctx.maxReplyBytes - 64 - (value === null ? 0 : value.length);
    // Cheap for the common case: a few holders cannot reach the limit.
    if (holders.length * 64 < limit && holders.length < 64) return false;
    let size = 0;
    for (const id of holders) {
      size += id.length + 3;
      if (size > limit) return true;
    }
    return false;
  }
}

/** Resolves after the promise hops of a grant's reply (table promise, lockReply, the handler's await). */
async function afterGrants(): Promise<void> {
  await null;
  await null;
  await null;
  await null;
}

/** The `debug` reply of a store's snapshot, or null if it would be longer than `limit` bytes. */
function storeDebugReply(d: StoreDebug, eol: string, limit: number): string | null {
  let out = `200 DEBUG${eol}`;
  for (const s of d.sessions) {
    const id = /^[1-9][0-9]{0,14}$/.test(s.id) ? s.id : JSON.stringify(s.id);
    const tail = (s.expiresIn === null ? "null" : `1,"expiresIn":${s.expiresIn}`) +
      whereFrom(s.peer, s.name);
    out +=
      `SESSION {"id":${id},"disposeTimeout":${s.releaseTimeout},"disposeTimeoutId":${tail}}${eol}`;
    if (out.length > limit) return null;
  }
  for (const l of d.locks) {
    const who = l.holders.map((h) => `#${h}`).join(", ");
    out += `LOCK ${l.key} ${who}${l.value === null ? "" : ` (${l.value})`}${eol}`;
    if (out.length > limit) return null;
  }
  for (const r of d.requests) {
    out += `REQUEST #${r.session} ${r.key}${eol}`;
    if (out.length > limit) return null;
  }
  out += `END${eol}`;
  return out.length > limit ? null : out;
}

/** The `peer` and `name` fields of a `debug` SESSION object (this server's additions), those known. */
function whereFrom(peer: string | null | undefined, name: string | null | undefined): string {
  let out = "";
  if (typeof peer === "string") out += `,"peer":${JSON.stringify(peer)}`;
  if (typeof name === "string") out += `,"name":${JSON.stringify(name)}`;
  return out;
}

function parseWhole(text: string, max: number): number | null {
  if (!WHOLE_NUMBER.test(text)) return null;
  const n = Number(text);
  return n <= max ? n : null;
}

/**
 * The `debug` reply, or null if it would be longer than `limit` bytes: it is
 * measured while it is built, and building stops there.
 */
function debugReply(table: LockTable, eol: string, limit: number): string | null {
  const now = Date.now();
  let out = `200 DEBUG${eol}`;
  for (const s of table.sessions.values()) {
    const id = /^[1-9][0-9]{0,14}$/.test(s.id) ? s.id : JSON.stringify(s.id);
    const tail = (s.connected ? "null" : `1,"expiresIn":${Math.max(0, s.expiresAt - now)}`) +
      whereFrom(s.peer, s.name);
    out +=
      `SESSION {"id":${id},"disposeTimeout":${s.releaseTimeout},"disposeTimeoutId":${tail}}${eol}`;
    if (out.length > limit) return null;
  }
  let requests = "";
  for (const state of table.keys.values()) {
    if (state.holders.size > 0) {
      let who = "";
      for (const holder of state.holders) {
        who += who === "" ? `#${holder.id}` : `, #${holder.id}`;
        if (who.length > limit) return null;
      }
      out += `LOCK ${state.key} ${who}${state.value === null ? "" : ` (${state.value})`}${eol}`;
    }
    for (const w of state.queue) {
      requests += `REQUEST #${w.session.id} ${w.key}${eol}`;
      if (out.length + requests.length > limit) return null;
    }
    if (out.length + requests.length > limit) return null;
  }
  out += `${requests}END${eol}`;
  return out.length > limit ? null : out;
}
