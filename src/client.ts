/**
 * {@linkcode ELockClient}: the eLock client.
 *
 * @module
 */

import {
  ConnectionClosedError,
  DeadlockError,
  type ELockError,
  LockUnavailableError,
  SessionLostError,
  UnexpectedResponseError,
  UnsupportedCommandError,
} from "./errors.ts";
import {
  checkWord,
  connIdCommand,
  debugCommand,
  encodeKey,
  type KeyEncoding,
  lockCommand,
  lockValueCommand,
  MAX_WAIT_SECONDS,
  quitCommand,
  rawCommand,
  setTimeoutCommand,
  statsCommand,
  unlockAllCommand,
  unlockCommand,
} from "./protocol/commands.ts";
import { Connection, DeadlineError, type RequestOptions } from "./protocol/connection.ts";
import { DEFAULT_PORT } from "./protocol/limits.ts";
import {
  type DebugInfo,
  parseDebug,
  parseStats,
  type Reply,
  replyLine,
  type Stats,
} from "./protocol/reply_reader.ts";
import { defaultTransport } from "./transport/default.ts";
import {
  _checkTlsOptions,
  type TlsOptions,
  type Transport,
  type TransportConnection,
} from "./transport/transport.ts";
import {
  type AcquireOptions,
  type ConnectOptions,
  DEFAULT_COMMAND_TIMEOUT,
  DEFAULT_HOST,
  DEFAULT_RELEASE_TIMEOUT,
  type LockOptions,
  type ReconnectOptions,
} from "./client_options.ts";
import {
  ELockClientEvent,
  type ELockClientEventInit,
  type ELockClientEventType,
} from "./client_events.ts";
import { HeldLock, loseLock } from "./lock_handle.ts";
import { ELockLockManager } from "./lock_manager.ts";

const MAX_WAIT_MS = MAX_WAIT_SECONDS * 1000;
const decoder = new TextDecoder();

interface Settings {
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
}

/** Commands whose repetition after a drop is harmless: sent again on the next connection. */
const RETRY: RequestOptions = { retry: true };

/**
 * A client of an eLock server (original or extended), on one TCP
 * connection: one session.
 *
 * Calls are sent in call order. Commands the server answers at once are
 * pipelined; a lock that waits occupies the connection until it is answered
 * (calls made meanwhile queue behind it). To wait on two keys at once, use a
 * second client.
 *
 * Every duration is in milliseconds.
 *
 * When the connection drops, the client reconnects and resumes its session
 * with every lock it holds (see {@linkcode ConnectOptions.reconnect}); it
 * reports what happens through `EventTarget` events
 * ({@linkcode ELockClientEventType}).
 *
 * @example
 * ```ts
 * import { ELockClient } from "@x/elock";
 * import { startServer } from "@x/elock/server";
 *
 * await using server = await startServer({ port: 0 });
 * await using client = await ELockClient.connect({ port: server.port });
 * if (await client.lock("invoice-42", { timeout: 5000 })) {
 *   // ... work on invoice 42 ...
 *   await client.unlock("invoice-42");
 * }
 * ```
 */
export class ELockClient extends EventTarget {
  readonly #settings: Settings;
  #connection: Connection;
  #releaseTimeout: number | undefined;
  #sessionId: string | null = null;
  /** Wire keys this session is known to hold. */
  readonly #held = new Set<string>();
  /** The handles of held locks, by wire key: told when the session is lost. */
  readonly #handles = new Map<string, Set<HeldLock>>();
  #locks: ELockLockManager | null = null;
  /** Set once connect() is done: a drop before that fails connect(). */
  #ready = false;
  /** Set by close() and quit(): a drop then is not reconnected. */
  #ending = false;
  /** Aborted by close(): stops reconnecting. */
  readonly #stop = new AbortController();
  /** The connection a reconnection is setting up. */
  #fresh: Connection | null = null;
  #heartbeatTimer: ReturnType<typeof setTimeout> | undefined;

  private constructor(settings: Settings, connection: Connection) {
    super();
    this.#settings = settings;
    this.#connection = connection;
  }

  /**
   * Connects to an eLock server.
   *
   * @param options host (default `127.0.0.1`), port (default 11400),
   *   transport, release timeout, key encoding, command timeout, logger
   * @returns the connected client
   * @throws {RangeError} an option is out of range
   * @throws {TypeError} an option has the wrong type, or there is no default
   *   transport on this runtime
   * @throws {ConnectionClosedError} the connection cannot be made (the
   *   runtime's error is its `cause`) or drops while `set_timeout` is sent
   * @throws the signal's reason when aborted
   *
   * @example
   * ```ts
   * import { ELockClient } from "@x/elock";
   * import { startServer } from "@x/elock/server";
   *
   * await using server = await startServer({ port: 0 });
   * const client = await ELockClient.connect({
   *   port: server.port,
   *   releaseTimeout: 0,
   *   keyEncoding: "sha1",
   * });
   * await client.close();
   * ```
   */
  static async connect(options: ConnectOptions = {}): Promise<ELockClient> {
    const settings = settingsOf(options);
    const { releaseTimeout, signal } = options;
    if (releaseTimeout !== undefined) setTimeoutCommand(releaseTimeout);
    let client: ELockClient | null = null;
    const connection = await openConnection(
      settings,
      signal,
      (error) => client !== null && client.#onDrop(error),
    );
    client = new ELockClient(settings, connection);
    try {
      // Pipelined: one round trip for both.
      await Promise.all([
        releaseTimeout === undefined ? null : client.#setReleaseTimeout(releaseTimeout, signal),
        settings.reconnect === null ? null : client.sessionId(),
      ]);
    } catch (error) {
      await connection.close();
      throw error;
    }
    client.#ready = true;
    client.#scheduleHeartbeat();
    return client;
  }

  /** The host this client connects to. */
  get host(): string {
    return this.#settings.host;
  }

  /** The port this client connects to. */
  get port(): number {
    return this.#settings.port;
  }

  /** How keys and values go on the wire: `"raw"` or `"sha1"`. */
  get keyEncoding(): KeyEncoding {
    return this.#settings.keyEncoding;
  }

  /** Whether the connection is closed (by {@linkcode ELockClient.close}, `quit` or a failure). */
  get closed(): boolean {
    return this.#connection.failure !== null;
  }

  /** Whether the connection dropped and the client is reconnecting; calls wait meanwhile. */
  get reconnecting(): boolean {
    return this.#connection.down !== null && this.#connection.failure === null;
  }

  /**
   * Locks shaped like the Web Locks API's `LockManager`:
   * `client.locks.request(name, options?, callback)` and `query()`.
   *
   * @example
   * ```ts ignore
   * const total = await client.locks.request("ledger", async () => await sum());
   * await client.locks.request("ledger", { mode: "shared" }, async (lock) => read(lock!.name));
   * ```
   */
  get locks(): ELockLockManager {
    this.#locks ??= new ELockLockManager(this);
    return this.#locks;
  }

  /**
   * Sets how long the session's locks outlive a dropped connection
   * (`set_timeout`). 0 releases them the moment the connection drops.
   *
   * @param ms the release timeout, in ms (0 to 2,147,483,647)
   * @throws {RangeError} `ms` is not a whole number in range
   * @throws {UnexpectedResponseError} the server did not answer 200
   *
   * @example
   * ```ts ignore
   * await client.setReleaseTimeout(0);
   * ```
   */
  async setReleaseTimeout(ms: number): Promise<void> {
    await this.#setReleaseTimeout(ms, undefined);
  }

  async #setReleaseTimeout(ms: number, signal: AbortSignal | undefined): Promise<void> {
    const reply = await this.#request(setTimeoutCommand(ms), { signal, retry: true });
    if (reply.code !== 200) throw unexpected(`set_timeout ${ms}`, reply);
    this.#releaseTimeout = ms;
  }

  /**
   * Locks `key` for this session (`lock`). Locks are re-entrant but not
   * counted: one {@linkcode ELockClient.unlock} releases them.
   *
   * @param key the key
   * @param options `timeout` (ms to wait; default 0: try once; `Infinity`:
   *   wait until granted) and `signal`
   * @returns `true` when locked, `false` when another session holds it past the timeout
   * @throws {InvalidKeyError} with raw keys: the key is not one protocol word
   * @throws {DeadlockError} the wait would close a cycle of waiters (extended servers)
   * @throws {UnexpectedResponseError} any other reply
   * @throws {ConnectionClosedError} the connection dropped or is closed
   * @throws the signal's reason when aborted
   *
   * @example
   * ```ts ignore
   * if (await client.lock("invoice-42", { timeout: 5000 })) {
   *   await client.unlock("invoice-42");
   * }
   * ```
   */
  async lock(key: string, options: LockOptions = {}): Promise<boolean> {
    return (await this.#lock(key, null, options)).reply.code === 200;
  }

  /**
   * Locks `key` to `value` (`lock_value`, extended servers): any number of
   * sessions may hold the key with the same value at once; another value
   * waits until they all unlock.
   *
   * @param key the key
   * @param value the value
   * @param options `timeout` (ms) and `signal`, as for {@linkcode ELockClient.lock}
   * @returns `true` when locked, `false` when not granted within the timeout
   * @throws {UnsupportedCommandError} the server is an original eLock server
   * @throws {InvalidKeyError} with raw keys: the key or value is not one protocol word
   * @throws {DeadlockError} the wait would close a cycle of waiters
   * @throws {UnexpectedResponseError} any other reply (e.g. the key holds an exclusive lock)
   * @throws {ConnectionClosedError} the connection dropped or is closed
   *
   * @example
   * ```ts ignore
   * await client.lockValue("schema", "v7", { timeout: 1000 }); // shared with every "v7" holder
   * ```
   */
  async lockValue(key: string, value: string, options: LockOptions = {}): Promise<boolean> {
    if (typeof value !== "string") {
      throw new TypeError(`The value must be a string: ${typeof value}`);
    }
    return (await this.#lock(key, value, options)).reply.code === 200;
  }

  /**
   * Releases `key` (`unlock`).
   *
   * @param key the key
   * @returns `true` when released (the extended server also says so when the
   *   key was not locked), `false` when another session holds it or (original
   *   servers) it was not locked
   * @throws {InvalidKeyError} with raw keys: the key is not one protocol word
   * @throws {UnexpectedResponseError} any other reply
   * @throws {ConnectionClosedError} the connection dropped or is closed
   *
   * @example
   * ```ts ignore
   * await client.unlock("invoice-42"); // true
   * ```
   */
  async unlock(key: string): Promise<boolean> {
    const word = this.#word(key, "key");
    let retried = false;
    let wire = typeof word === "string" ? word : "";
    const reply = await this.#request(
      then(word, (w) => unlockCommand(wire = w)),
      {
        retry: true,
        onRetry: () => void (retried = true),
        // The reply was lost with the connection (never one given up on): release it again.
        onUnseenReply: () => this.#releaseLate(wire),
      },
    );
    if (reply.code === 200 || reply.code === 403) {
      this.#held.delete(wire);
      this.#handles.delete(wire);
      // A 403 to a repeated unlock: the first attempt may have released it.
      return reply.code === 200 || retried;
    }
    throw unexpected(`unlock ${wire}`, reply);
  }

  /**
   * Releases every lock of this session (`unlock_all`).
   *
   * @throws {UnexpectedResponseError} the server did not answer 200
   * @throws {ConnectionClosedError} the connection dropped or is closed
   *
   * @example
   * ```ts ignore
   * await client.unlockAll();
   * ```
   */
  async unlockAll(): Promise<void> {
    const reply = await this.#request(unlockAllCommand(), RETRY);
    if (reply.code !== 200) throw unexpected("unlock_all", reply);
    this.#held.clear();
    this.#handles.clear();
  }

  /**
   * The server's counters (`stats`).
   *
   * @returns `{ clients, locks, monitoring }`
   * @throws {UnexpectedResponseError} the server did not answer `200 STATS`
   * @throws {ProtocolError} a counter line is malformed
   *
   * @example
   * ```ts ignore
   * const { clients, locks } = await client.stats();
   * ```
   */
  async stats(): Promise<Stats> {
    const reply = await this.#request(statsCommand(), RETRY);
    if (reply.code !== 200) throw unexpected("stats", reply);
    return parseStats(reply);
  }

  /**
   * Sessions, locks and waiting requests (`debug`, extended servers).
   *
   * @returns `{ sessions, locks, requests }`; `sessions` are the server's JSON objects
   * @throws {UnsupportedCommandError} the server is an original eLock server
   * @throws {UnexpectedResponseError} any other reply
   *
   * @example
   * ```ts ignore
   * const { locks } = await client.debug();
   * for (const lock of locks) console.log(lock.key, lock.holders);
   * ```
   */
  async debug(): Promise<DebugInfo> {
    const reply = await this.#request(debugCommand(), RETRY);
    if (reply.code === 400) throw new UnsupportedCommandError("debug", replyLine(reply));
    if (reply.code !== 200) throw unexpected("debug", reply);
    return parseDebug(reply);
  }

  /**
   * This session's id (`conn_id`), to {@linkcode ELockClient.resume} it
   * from another connection after a drop.
   *
   * @returns the session id
   * @throws {UnexpectedResponseError} the server did not answer 200
   *
   * @example
   * ```ts ignore
   * const id = await client.sessionId();
   * ```
   */
  async sessionId(): Promise<string> {
    if (this.#sessionId !== null) return this.#sessionId;
    const reply = await this.#request(connIdCommand(), RETRY);
    if (reply.code !== 200 || reply.message === "") throw unexpected("conn_id", reply);
    this.#sessionId = reply.message;
    return reply.message;
  }

  /**
   * Adopts the disconnected session `id` and its locks (`conn_id ID`). The
   * servers accept that only as the first command of a connection, so when
   * this connection has sent anything, a new connection is opened, the
   * session resumed there and the release timeout set again; the old
   * connection is then closed as by {@linkcode ELockClient.close}.
   *
   * @param id the session id from {@linkcode ELockClient.sessionId}
   * @throws {InvalidKeyError} the id is not one protocol word
   * @throws {UnexpectedResponseError} the server refused (the session is
   *   still connected, expired, or unknown)
   * @throws {ConnectionClosedError} the connection dropped or is closed
   *
   * @example
   * ```ts ignore
   * const id = await first.sessionId();
   * await first.close(); // its locks live for the release timeout
   * await second.resume(id); // and now belong to `second`
   * ```
   */
  async resume(id: string): Promise<void> {
    checkWord(id, "session id");
    const command = connIdCommand(id);
    await this.#connection.exclusive(async () => {
      if (!this.#connection.sentAny) {
        const reply = await this.#connection.request(command, { urgent: true });
        if (reply.code !== 200) throw unexpected(`conn_id ${id}`, reply);
      } else {
        const fresh = await openConnection(this.#settings, undefined, undefined);
        try {
          const reply = await fresh.request(command);
          if (reply.code !== 200) throw unexpected(`conn_id ${id}`, reply);
          if (this.#releaseTimeout !== undefined) {
            const set = await fresh.request(setTimeoutCommand(this.#releaseTimeout));
            if (set.code !== 200) throw unexpected(`set_timeout ${this.#releaseTimeout}`, set);
          }
        } catch (error) {
          await fresh.close();
          throw error;
        }
        this.#connection.adopt(fresh);
      }
      this.#sessionId = id;
      this.#held.clear();
      this.#handles.clear();
    });
  }

  /**
   * Sends any one-line command and returns the reply: the escape hatch.
   * Nothing is sent behind it until it is answered.
   *
   * @param commandLine the command, without its line end
   * @returns `{ code, message, lines }` (`lines`: the data lines of `stats`/`debug`)
   * @throws {TypeError} the line is empty or contains `\r` or `\n`
   * @throws {ConnectionClosedError} the connection dropped or is closed
   *
   * @example
   * ```ts ignore
   * const { code, message } = await client.command("conn_id"); // 200, "<id>"
   * ```
   */
  async command(commandLine: string): Promise<Reply> {
    const bytes = rawCommand(commandLine);
    const words = commandLine.split(" ");
    const waitWord = words[0] === "lock" ? words[2] : words[0] === "lock_value" ? words[3] : "";
    const waitMs = /^[0-9]{1,10}$/.test(waitWord ?? "") ? Number(waitWord) * 1000 : 0;
    const reply = await this.#request(bytes, { barrier: true, waitMs });
    if (reply.code === 200) this.#noteRaw(words);
    return reply;
  }

  /**
   * Ends the session (`quit`) and closes the connection. On an extended
   * server `quit` releases the session's locks; on an original one they
   * follow the release timeout, as after any disconnect.
   *
   * @throws {UnexpectedResponseError} the server did not answer 200 (the
   *   connection is closed anyway)
   *
   * @example
   * ```ts ignore
   * await client.quit();
   * ```
   */
  async quit(): Promise<void> {
    this.#ending = true;
    try {
      const reply = await this.#request(quitCommand(), { barrier: true });
      if (reply.code !== 200) throw unexpected("quit", reply);
      this.#held.clear();
      this.#handles.clear();
    } finally {
      clearTimeout(this.#heartbeatTimer);
      await this.#connection.close("Connection closed: after quit");
    }
  }

  /**
   * Closes the connection without `quit`. The session's locks then live for
   * the release timeout, so the session can be resumed; pending calls
   * reject with {@linkcode ConnectionClosedError}.
   *
   * @example
   * ```ts ignore
   * await client.close();
   * ```
   */
  async close(): Promise<void> {
    this.#ending = true;
    clearTimeout(this.#heartbeatTimer);
    this.#stop.abort(new ConnectionClosedError("Connection closed: by the client"));
    await Promise.all([this.#connection.close(), this.#fresh?.close()]);
  }

  /**
   * Releases every lock of the session (`unlock_all`) and closes: what
   * `await using client = ...` does at the end of its scope. While the
   * client is reconnecting it only closes (the server then releases the
   * locks when the session's release timeout ends).
   *
   * @example
   * ```ts ignore
   * {
   *   await using client = await ELockClient.connect();
   *   await client.lock("k");
   * } // unlock_all, then closed
   * ```
   */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      // While reconnecting, no wait: the server releases the locks after the release timeout.
      if (!this.closed && !this.reconnecting) await this.unlockAll();
    } finally {
      await this.close();
    }
  }

  /**
   * Takes a lock and returns its handle, for `await using`.
   *
   * @param key the key
   * @param options `timeout` (ms), `signal`, and `value` for a value lock
   * @returns the held lock
   * @throws {LockUnavailableError} not granted within the timeout
   * @throws {DeadlockError} the wait would close a cycle of waiters
   * @throws {InvalidKeyError} with raw keys: the key is not one protocol word
   * @throws {ConnectionClosedError} the connection dropped or is closed
   * @throws the signal's reason when aborted
   *
   * @example
   * ```ts ignore
   * await using lock = await client.acquire("invoice-42", { timeout: 5000 });
   * ```
   */
  async acquire(key: string, options: AcquireOptions = {}): Promise<HeldLock> {
    const value = options.value ?? null;
    const { reply, wire } = await this.#lock(key, value, options);
    if (reply.code !== 200) {
      throw new LockUnavailableError(key, reply.code === 0 ? {} : { reply: replyLine(reply) });
    }
    const lock = new HeldLock(key, value, () => this.unlock(key));
    const handles = this.#handles.get(wire) ?? new Set();
    this.#handles.set(wire, handles.add(lock));
    return lock;
  }

  /**
   * Runs `fn` while holding `key`, and releases it when `fn` settles.
   *
   * @param key the key
   * @param fn the work; gets the held lock
   * @param options `timeout` (ms), `signal`, and `value` for a value lock
   * @returns what `fn` returns
   * @throws {LockUnavailableError} not granted within the timeout (`fn` not called)
   * @throws what `fn` throws
   *
   * @example
   * ```ts ignore
   * const total = await client.withLock("ledger", async () => await sum(), { timeout: 5000 });
   * ```
   */
  async withLock<T>(
    key: string,
    fn: (lock: HeldLock) => T | Promise<T>,
    options: AcquireOptions = {},
  ): Promise<T> {
    if (typeof fn !== "function") throw new TypeError("withLock() needs a function");
    const lock = await this.acquire(key, options);
    let result: T;
    try {
      result = await fn(lock);
    } catch (error) {
      await lock.release().catch(() => {});
      throw error;
    }
    await lock.release();
    return result;
  }

  #request(bytes: Uint8Array | Promise<Uint8Array>, options?: RequestOptions): Promise<Reply> {
    return this.#connection.request(bytes, options);
  }

  #word(text: string, what: "key" | "value"): string | Promise<string> {
    if (this.#settings.keyEncoding === "raw") {
      checkWord(text, what);
      return text;
    }
    if (typeof text !== "string") {
      throw new TypeError(`The ${what} must be a string: ${typeof text}`);
    }
    return encodeKey(text, "sha1", what);
  }

  /** Sends `lock`/`lock_value`; a reply with code 0 means the deadline passed. */
  async #lock(
    key: string,
    value: string | null,
    options: LockOptions,
  ): Promise<{ reply: Reply; wire: string }> {
    const timeout = options.timeout ?? 0;
    if (typeof timeout !== "number" || Number.isNaN(timeout) || timeout < 0) {
      throw new RangeError(`Invalid timeout: ${String(timeout)} ms`);
    }
    const keyWord = this.#word(key, "key");
    const valueWord = value === null ? null : this.#word(value, "value");
    // Past the longest wait a server honours: ask again until the time is up.
    const long = timeout > MAX_WAIT_MS;
    const waitMs = long ? MAX_WAIT_MS : timeout;
    const endAt = Date.now() + timeout;
    let wire = "";
    let heldBefore = false;
    const build = (k: string, v: string | null): Uint8Array => {
      wire = k;
      heldBefore = this.#held.has(k);
      return v === null ? lockCommand(k, waitMs) : lockValueCommand(k, v, waitMs);
    };
    let bytes: Uint8Array | Promise<Uint8Array> =
      typeof keyWord === "string" && (valueWord === null || typeof valueWord === "string")
        ? build(keyWord, valueWord)
        : Promise.all([keyWord, valueWord]).then(([k, v]) => build(k, v));
    for (;;) {
      let reply: Reply;
      try {
        reply = await this.#request(bytes, {
          barrier: waitMs > 0,
          waitMs,
          signal: options.signal,
          deadline: long || timeout === 0 ? undefined : timeout,
          // A grant the caller did not see (late, or lost with the connection) is released.
          onUnseenReply: (reply) => {
            if ((reply === null || reply.code === 200) && !heldBefore) this.#releaseLate(wire);
          },
          retry: true,
          // On the next connection: the session may be a new one.
          onRetry: () => void (heldBefore = this.#held.has(wire)),
        });
      } catch (error) {
        if (error instanceof DeadlineError) {
          return { reply: { code: 0, message: "", lines: [] }, wire };
        }
        throw error;
      }
      if (bytes instanceof Promise) bytes = await bytes;
      if (reply.code === 200) this.#held.add(wire);
      if (reply.code === 409 && long && Date.now() < endAt) continue;
      if (reply.code === 200 || reply.code === 409) return { reply, wire };
      if (reply.code === 423) throw new DeadlockError(reply.message);
      if (reply.code === 400 && value !== null) {
        throw new UnsupportedCommandError("lock_value", replyLine(reply));
      }
      throw unexpected(decoder.decode(bytes).trimEnd(), reply);
    }
  }

  /** Keeps what the client knows of its session right after a raw command succeeded. */
  #noteRaw(words: string[]): void {
    const [command, argument] = words;
    if (command === "unlock_all" || command === "quit") {
      this.#held.clear();
      this.#handles.clear();
    }
    if (command === "set_timeout" && words.length === 2 && /^[0-9]+$/.test(argument ?? "")) {
      this.#releaseTimeout = Number(argument);
    }
    if (command === "conn_id" && words.length === 2 && argument !== undefined) {
      this.#sessionId = argument;
      this.#held.clear();
      this.#handles.clear();
    }
  }

  #scheduleHeartbeat(): void {
    const every = this.#settings.heartbeat;
    if (every === null) return;
    this.#heartbeatTimer = setTimeout(() => {
      if (this.closed || this.#ending) return;
      if (this.#held.size > 0 && this.#connection.idle) {
        // An unanswered beat drops the connection: then it is resumed, or the locks reported lost.
        this.#connection.request(connIdCommand(), {
          replyTimeout: Math.min(every, this.#settings.commandTimeout),
        }).catch(() => {});
      }
      this.#scheduleHeartbeat();
    }, every);
  }

  #dispatch(type: ELockClientEventType, init?: ELockClientEventInit): void {
    this.dispatchEvent(new ELockClientEvent(type, init));
  }

  /** The connection dropped: reconnect (keeping the calls) or let it fail. */
  #onDrop(error: ELockError): boolean {
    const pacing = this.#settings.reconnect;
    if (!this.#ready || this.#ending) return false;
    this.#dispatch("disconnect", { error });
    // A server that does not speak eLock is not reconnected to.
    if (pacing === null || !(error instanceof ConnectionClosedError)) {
      // No resume: the holders of the session's locks must learn it now.
      clearTimeout(this.#heartbeatTimer);
      this.#loseSession(this.#sessionId ?? "", `the connection dropped (${error.message})`);
      return false;
    }
    this.#settings.logger?.debug(`elock: ${error.message}; reconnecting`);
    void this.#reconnect(error, pacing);
    return true;
  }

  /**
   * Opens connections until one is up, resuming the session on it. The
   * session counts as lost when the server refuses it for good, or when the
   * release timeout passes (counted from the drop) before it is resumed.
   * Gives up, closing the client, once the session is lost and no
   * connection could be made for the longer of the release and command
   * timeouts.
   */
  async #reconnect(drop: ConnectionClosedError, pacing: Required<ReconnectOptions>): Promise<void> {
    const droppedAt = Date.now();
    const releaseTimeout = this.#releaseTimeout ?? DEFAULT_RELEASE_TIMEOUT;
    const oldId = this.#sessionId;
    let lost = false;
    const lose = (reason: string) => {
      if (lost) return;
      lost = true;
      this.#loseSession(oldId ?? "", reason);
    };
    if (oldId === null) lose("its id was not known");
    const lostTimer = setTimeout(
      () => lose(`not resumed within the release timeout (${releaseTimeout} ms)`),
      Math.min(releaseTimeout, 2 ** 31 - 1),
    );
    const giveUpAt = droppedAt + Math.max(releaseTimeout, this.#settings.commandTimeout);
    let lastError: unknown = drop;
    try {
      for (let attempt = 1;; attempt++) {
        if (this.#connection.failure !== null) return;
        if (attempt > 1) {
          if (lost && Date.now() >= giveUpAt) {
            const error = new ConnectionClosedError(
              `Connection closed: cannot reconnect to ${this.host}:${this.port}`,
              { cause: lastError },
            );
            this.#dispatch("error", { error });
            clearTimeout(this.#heartbeatTimer);
            this.#connection.fail(error);
            return;
          }
          await sleep(backoff(attempt, pacing), this.#stop.signal);
          if (this.#connection.failure !== null) return;
        }
        this.#dispatch("reconnect", { attempt });
        try {
          const resumed = await this.#reopen(
            lost ? null : oldId,
            () => lose("the server refused to resume it"),
          );
          if (resumed === "busy") {
            lastError = new UnexpectedResponseError(`conn_id ${oldId}`, "403 (still active)");
            continue;
          }
          if (this.#connection.failure === null && !lost) {
            this.#dispatch("resume", { sessionId: oldId ?? "" });
          }
          return;
        } catch (error) {
          lastError = error;
          if (this.#connection.failure !== null) return;
          this.#settings.logger?.debug(`elock: reconnection attempt ${attempt} failed: ${error}`);
          this.#dispatch("error", { error, attempt });
        }
      }
    } finally {
      clearTimeout(lostTimer);
    }
  }

  /**
   * Opens a connection, resumes session `id` on it (or starts a new session
   * when `id` is `null`), sets the release timeout again and adopts it.
   * Resolves `"busy"` (and adopts nothing) when the server says the session
   * is still connected; `"refused"` when it is gone (`refused` is called,
   * then the new session is adopted); `"ok"` otherwise.
   */
  async #reopen(id: string | null, refused: () => void): Promise<"ok" | "busy" | "refused"> {
    const fresh = await openConnection(this.#settings, this.#stop.signal, undefined);
    this.#fresh = fresh;
    try {
      this.#dispatch("connect");
      // Pipelined: `conn_id ID` must come first, then the new connection's settings.
      const [resumed, set, current] = await Promise.all([
        id === null ? null : fresh.request(connIdCommand(id)),
        this.#releaseTimeout === undefined
          ? null
          : fresh.request(setTimeoutCommand(this.#releaseTimeout)),
        fresh.request(connIdCommand()),
      ]);
      if (set !== null && set.code !== 200) {
        throw unexpected(`set_timeout ${this.#releaseTimeout}`, set);
      }
      if (current.code !== 200 || current.message === "") throw unexpected("conn_id", current);
      let outcome: "ok" | "refused" = "ok";
      if (resumed !== null && resumed.code !== 200) {
        // The extended server says why; the original one does not, so it is asked
        // again until the release timeout says the session is gone.
        if (!/disposed/i.test(resumed.message)) {
          await fresh.close();
          return "busy";
        }
        outcome = "refused";
        // Before the new session's id is taken: losing the old one forgets its id.
        refused();
      } else if (resumed !== null && this.#sessionId !== id) {
        // Resumed after its holders were told the locks were lost: free them now.
        const all = await fresh.request(unlockAllCommand());
        if (all.code !== 200) throw unexpected("unlock_all", all);
      }
      if (this.#connection.failure !== null) {
        await fresh.close();
        return outcome;
      }
      this.#sessionId = current.message;
      this.#connection.adopt(fresh);
      return outcome;
    } catch (error) {
      await fresh.close();
      throw error;
    } finally {
      this.#fresh = null;
    }
  }

  /** The session is gone: its locks are forgotten, their holders told. */
  #loseSession(id: string, reason: string): void {
    const keys = [...this.#held];
    const error = new SessionLostError(id, keys, reason);
    this.#settings.logger?.debug(`elock: ${error.message}`);
    this.#held.clear();
    for (const handles of this.#handles.values()) {
      for (const handle of handles) loseLock(handle, error);
    }
    this.#handles.clear();
    this.#sessionId = null;
    this.#dispatch("sessionlost", { error, keys, sessionId: id });
  }

  /** Releases a lock granted after its caller gave up, ahead of every queued call. */
  #releaseLate(wire: string): void {
    this.#settings.logger?.debug(`elock: releasing ${wire}, granted after its caller gave up`);
    this.#connection.request(unlockCommand(wire), { urgent: true }).then(
      (reply) => {
        if (reply.code === 200) {
          this.#held.delete(wire);
          this.#handles.delete(wire);
        }
      },
      () => {},
    );
  }
}

function settingsOf(options: ConnectOptions): Settings {
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
  };
}

function heartbeatOf(option: number | false | undefined, releaseTimeout: number | undefined) {
  if (option === false) return null;
  if (option === undefined) {
    const third = Math.floor((releaseTimeout ?? 0) / 3);
    return third > 0 ? Math.min(10_000, Math.max(1000, third)) : 10_000;
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
function backoff(attempt: number, pacing: Required<ReconnectOptions>): number {
  const full = Math.min(pacing.maxDelay, pacing.initialDelay * 2 ** Math.min(attempt - 2, 30));
  return full / 2 + Math.random() * full / 2;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
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

async function openConnection(
  settings: Settings,
  signal: AbortSignal | undefined,
  onDrop: ((error: ELockError) => boolean) | undefined,
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
    ...(settings.maxLineLength === undefined ? {} : { maxLineLength: settings.maxLineLength }),
  });
}

function then<T, U>(value: T | Promise<T>, fn: (value: T) => U): U | Promise<U> {
  return value instanceof Promise ? value.then(fn) : fn(value);
}

function unexpected(command: string, reply: Reply): UnexpectedResponseError {
  return new UnexpectedResponseError(command, replyLine(reply));
}
