/**
 * {@linkcode ELockClient}: the eLock client.
 *
 * @module
 */

import {
  ConnectionClosedError,
  LockUnavailableError,
  ProtocolError,
  SessionLostError,
  UnsupportedCommandError,
} from "../errors.ts";
import {
  checkWord,
  connIdCommand,
  debugCommand,
  encodeKey,
  fenceCommand,
  type KeyEncoding,
  nameCommand,
  quitCommand,
  rawCommand,
  setTimeoutCommand,
  statsCommand,
} from "../protocol/commands.ts";
import { DeadlineError } from "../protocol/connection.ts";
import {
  type DebugInfo,
  parseDebug,
  parseStats,
  type Reply,
  replyLine,
  type Stats,
} from "../protocol/reply_reader.ts";
import {
  ELockClientEvent,
  type ELockClientEventInit,
  type ELockClientEventListener,
  type ELockClientEventType,
} from "./events.ts";
import { checkLockOptions, checkNumber, describe } from "./checks.ts";
import { bindRelease, HeldLock, loseLock, sessionOf } from "./held_lock.ts";
import { LocalQueue } from "./local_queue.ts";
import { ELockLockManager } from "./lock_manager.ts";
import type { AcquireOptions, ConnectOptions, LockOptions } from "./options.ts";
import { SessionPool } from "./pool.ts";
import { Session } from "./session.ts";
import { endpointOf, openConnection, type Settings, settingsOf, unexpected } from "./settings.ts";

/**
 * A client of an eLock server (original or extended).
 *
 * Two levels, on one client:
 *
 * - {@linkcode ELockClient.acquire}, {@linkcode ELockClient.withLock} and
 *   `locks.request` exclude each other inside the process exactly as they
 *   exclude other processes: per key, the client's own requests queue
 *   first come, first served, and each holder has a session of its own from
 *   a small pool ({@linkcode ConnectOptions.poolSize}), so one waiting on a
 *   key never holds back another on another key. Share one client between
 *   every task of a process.
 * - `lock()`, `unlock()`, `unlockAll()`, `sessionId()` and `resume()` speak
 *   the protocol on the client's own session, as the PHP client does: its
 *   locks are re-entrant and not counted (a second `lock()` of a key it holds
 *   answers `true`; one `unlock()` releases it). A raw `unlock()` or
 *   `unlockAll()` of a key a handle of that session holds marks the handle
 *   lost.
 *
 * Calls on one session are sent in call order; commands the server answers
 * at once are pipelined, and a lock that waits occupies its session's
 * connection until it is answered. Every duration is in milliseconds.
 *
 * When a connection drops, the client reconnects and resumes the session
 * with every lock it holds (see {@linkcode ConnectOptions.reconnect}); it
 * reports what happens through `EventTarget` events, typed by name
 * ({@linkcode ELockClientEventMap}).
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
  readonly #primary: Session;
  readonly #pool: SessionPool;
  readonly #local = new LocalQueue();
  #releaseTimeout: number | undefined;
  #locks: ELockLockManager | null = null;

  private constructor(settings: Settings, primary: Session) {
    super();
    this.#settings = settings;
    this.#primary = primary;
    this.#releaseTimeout = primary.releaseTimeout;
    this.#pool = new SessionPool(primary, settings.poolSize, (signal) =>
      Session.open(
        settings,
        { releaseTimeout: this.#releaseTimeout, signal, name: primary.name },
        (type, init) => this.#dispatch(type, init),
      ));
  }

  /**
   * Connects to an eLock server.
   *
   * @param options host (default `127.0.0.1`), port (default 11400),
   *   transport, release timeout, key encoding, command timeout, logger
   * @returns the connected client
   * @throws {RangeError} an option is out of range
   * @throws {TypeError} the options are not an object, name an unknown option
   *   (the message lists the known ones), or an option has the wrong type (the
   *   message says what was given and what is wanted); or there is no default
   *   transport on this runtime. Nothing is connected then.
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
    const { releaseTimeout, signal, name } = options;
    if (releaseTimeout !== undefined) setTimeoutCommand(releaseTimeout);
    // Checked before anything is sent: a TypeError for a name that is not one printable word.
    if (name !== undefined) nameCommand(name);
    let client: ELockClient | null = null;
    const primary = await Session.open(
      settings,
      { releaseTimeout, signal, name },
      (type, init) => void (client !== null && client.#dispatch(type, init)),
    );
    client = new ELockClient(settings, primary);
    return client;
  }

  /**
   * Adds a listener of the event `type`, as `EventTarget` does, typed by
   * name: the listener gets the event of {@linkcode ELockClientEventMap}
   * (`sessionlost` has `keys`, `error` and `sessionId`; `reconnect` has
   * `attempt`; ...), and a name the client does not dispatch is a type
   * error.
   *
   * @param type the event's name: `connect`, `disconnect`, `reconnect`,
   *   `resume`, `sessionlost` or `error`
   * @param listener called with the event
   * @param options as for `EventTarget` (`once`, `signal`, ...)
   *
   * @example
   * ```ts ignore
   * client.addEventListener("sessionlost", (event) => {
   *   console.error(`lost ${event.keys.join(", ")}:`, event.error.message);
   * });
   * ```
   */
  override addEventListener<K extends ELockClientEventType>(
    type: K,
    listener: ELockClientEventListener<K> | null,
    options?: boolean | {
      capture?: boolean;
      once?: boolean;
      passive?: boolean;
      signal?: AbortSignal;
    },
  ): void {
    super.addEventListener(type, listener as EventListenerOrEventListenerObject | null, options);
  }

  /**
   * Removes a listener added with {@linkcode ELockClient.addEventListener}.
   *
   * @param type the event's name
   * @param listener the listener added
   * @param options as for `EventTarget` (`capture`)
   *
   * @example
   * ```ts ignore
   * const onReconnect = (event: ELockClientEventMap["reconnect"]) => console.log(event.attempt);
   * client.addEventListener("reconnect", onReconnect);
   * client.removeEventListener("reconnect", onReconnect);
   * ```
   */
  override removeEventListener<K extends ELockClientEventType>(
    type: K,
    listener: ELockClientEventListener<K> | null,
    options?: boolean | { capture?: boolean },
  ): void {
    super.removeEventListener(
      type,
      listener as EventListenerOrEventListenerObject | null,
      options,
    );
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

  /** Whether the client is closed (by {@linkcode ELockClient.close}, `quit` or a failure). */
  get closed(): boolean {
    return this.#primary.closed;
  }

  /** Whether the client's own connection dropped and is reconnecting; its calls wait meanwhile. */
  get reconnecting(): boolean {
    return this.#primary.connection.down !== null && !this.#primary.closed;
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
   * @throws {TypeError} `ms` is not a number
   * @throws {RangeError} `ms` is not a whole number in range
   * @throws {UnexpectedResponseError} the server did not answer 200
   *
   * @example
   * ```ts ignore
   * await client.setReleaseTimeout(0);
   * ```
   */
  async setReleaseTimeout(ms: number): Promise<void> {
    checkNumber("setReleaseTimeout()", "ms", ms, "a whole number of ms");
    setTimeoutCommand(ms);
    this.#checkOpen();
    const sessions = this.#pool.sessions.filter((s) => !s.closed || s === this.#primary);
    await Promise.all(sessions.map((session) => session.setReleaseTimeout(ms)));
    this.#releaseTimeout = ms;
  }

  /**
   * Locks `key` for this session (`lock`). Locks are re-entrant but not
   * counted: one {@linkcode ELockClient.unlock} releases them.
   *
   * Waiting: `lock()`, `lockValue()`, `acquire()` and `withLock()` do not wait
   * unless given a `timeout` (in ms; `Infinity` waits until granted), while
   * `locks.request()` and `elock lock` wait until granted unless given
   * `ifAvailable` or `--timeout`.
   *
   * @param key the key
   * @param options `timeout` (ms to wait; default 0: try once; `Infinity`:
   *   wait until granted) and `signal`
   * @returns `true` when locked, `false` when another session holds it past the timeout
   * @throws {TypeError} the options are not an object (a number: `{ timeout: n }` is meant),
   *   name an unknown option, or an option has the wrong type (nothing is sent)
   * @throws {RangeError} the timeout is negative or NaN
   * @throws {InvalidKeyError} with raw keys: the key is not one protocol word
   * @throws {DeadlockError} the wait would close a cycle of waiters (extended servers)
   * @throws {SessionLostError} granted, but on a session lost since it was asked (released)
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
  lock(key: string, options: LockOptions = {}): Promise<boolean> {
    return this.#rawLock(key, null, options);
  }

  /**
   * Locks `key` to `value` (`lock_value`, extended servers): any number of
   * sessions may hold the key with the same value at once; another value
   * waits until they all unlock.
   *
   * Waiting: `lock()`, `lockValue()`, `acquire()` and `withLock()` do not wait
   * unless given a `timeout` (in ms; `Infinity` waits until granted), while
   * `locks.request()` and `elock lock` wait until granted unless given
   * `ifAvailable` or `--timeout`.
   *
   * @param key the key
   * @param value the value
   * @param options `timeout` (ms) and `signal`, as for {@linkcode ELockClient.lock}
   * @returns `true` when locked, `false` when not granted within the timeout
   * @throws {TypeError} the options are not an object (a number: `{ timeout: n }` is meant),
   *   name an unknown option, or an option has the wrong type (nothing is sent)
   * @throws {RangeError} the timeout is negative or NaN
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
    return await this.#rawLock(key, value, options);
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
    this.#checkOpen();
    const { reply, retried } = await this.#primary.unlock(this.#word(key, "key"));
    this.#pool.poke();
    // Not sent: the session it was meant for was lost (and its locks with it).
    if (reply === null) return false;
    // A 403 to a repeated unlock: the first attempt may have released it.
    if (reply.code === 200 || reply.code === 403) return reply.code === 200 || retried;
    throw unexpected(`unlock ${await this.#word(key, "key")}`, reply);
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
    this.#checkOpen();
    const reply = await this.#primary.unlockAll();
    this.#pool.poke();
    if (reply.code !== 200) throw unexpected("unlock_all", reply);
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
    this.#checkOpen();
    const reply = await this.#primary.request(statsCommand(), { retry: true });
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
    this.#checkOpen();
    const reply = await this.#primary.request(debugCommand(), { retry: true });
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
    // Known, it is still the answer after close(): the session lives on to be resumed.
    if (this.#primary.id !== null) {
      this.#primary.pinned = true;
      return this.#primary.id;
    }
    this.#checkOpen();
    this.#primary.pinned = true;
    return await this.#primary.sessionId();
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
    this.#checkOpen();
    const primary = this.#primary;
    primary.pinned = true;
    const connection = primary.connection;
    await connection.exclusive(async () => {
      if (!connection.sentAny) {
        const reply = await connection.request(command, { urgent: true });
        if (reply.code !== 200) throw unexpected(`conn_id ${id}`, reply);
      } else {
        const fresh = await openConnection(this.#settings, undefined, undefined, undefined);
        try {
          const reply = await fresh.request(command);
          if (reply.code !== 200) throw unexpected(`conn_id ${id}`, reply);
          if (primary.releaseTimeout !== undefined) {
            const set = await fresh.request(setTimeoutCommand(primary.releaseTimeout));
            if (set.code !== 200) throw unexpected(`set_timeout ${primary.releaseTimeout}`, set);
          }
          // Refused by servers without the extension: harmless.
          if (primary.name !== undefined) await fresh.request(nameCommand(primary.name));
        } catch (error) {
          await fresh.close();
          throw error;
        }
        connection.adopt(fresh);
        primary.endpoint = endpointOf(fresh);
      }
      this.#replaceSession(id, "resume() replaced it");
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
    this.#checkOpen();
    const words = commandLine.split(" ");
    const waitWord = words[0] === "lock" ? words[2] : words[0] === "lock_value" ? words[3] : "";
    const waitMs = /^[0-9]{1,10}$/.test(waitWord ?? "") ? Number(waitWord) * 1000 : 0;
    const reply = await this.#primary.request(bytes, { barrier: true, waitMs });
    if (reply.code === 200) this.#noteRaw(words, reply);
    // The caller's own copy: one-line replies are shared (frozen) inside the client.
    return { code: reply.code, message: reply.message, lines: [...reply.lines] };
  }

  /**
   * Ends the session (`quit`) and closes the connection. On an extended
   * server `quit` releases the session's locks; on an original one they
   * follow the release timeout, as after any disconnect. While the client
   * is reconnecting, `quit` waits for the next connection (and fails with
   * it).
   *
   * @throws {UnexpectedResponseError} the server did not answer 200 (the
   *   connection is closed anyway)
   * @throws {ConnectionClosedError} the connection dropped or is closed
   *
   * @example
   * ```ts ignore
   * await client.quit();
   * ```
   */
  async quit(): Promise<void> {
    const primary = this.#primary;
    if (this.closed) {
      // The client's own session is gone, but pooled sessions may still hold locks: end them.
      await this.#endPool();
      this.#checkOpen();
    }
    const connection = primary.connection;
    // Stopped now, the supervisor would never bring the connection back up: the quit would hang.
    if (connection.down !== null) {
      await connection.exclusive(() => Promise.resolve()).catch(() => {});
    }
    primary.supervisor.stop();
    try {
      const reply = await primary.request(quitCommand(), { barrier: true });
      if (reply.code !== 200) throw unexpected("quit", reply);
      primary.ledger.unlockedAll(
        new SessionLostError(primary.id ?? "", [], "quit() ended the session"),
      );
    } finally {
      await Promise.all([primary.close("Connection closed: after quit"), this.#endPool()]);
    }
  }

  /** Closes the pool and ends its other sessions (`unlock_all`, then closed). */
  async #endPool(): Promise<void> {
    this.#pool.close();
    await Promise.all(this.#others().map((session) => this.#endSession(session)));
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
    this.#pool.close();
    await Promise.all(this.#pool.sessions.map((session) => session.close()));
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
      await Promise.all([
        !this.closed && !this.reconnecting ? this.unlockAll() : null,
        ...this.#others().map((session) => this.#endSession(session)),
      ]);
    } finally {
      await this.close();
    }
  }

  /**
   * Takes a lock and returns its handle, for `await using`. Requests of
   * this client for the same key wait for each other here first (first come,
   * first served; value locks of the same value share), then the lock is
   * taken on a session of the pool (or on the session of `within`).
   *
   * Waiting: `lock()`, `lockValue()`, `acquire()` and `withLock()` do not wait
   * unless given a `timeout` (in ms; `Infinity` waits until granted), while
   * `locks.request()` and `elock lock` wait until granted unless given
   * `ifAvailable` or `--timeout`.
   *
   * @param key the key
   * @param options `timeout` (ms, counted from the call: time queued here
   *   included), `signal`, `value` for a value lock, `within` to nest it in
   *   a lock already held
   * @returns the held lock
   * @throws {TypeError} the options are not an object (a number: `{ timeout: n }` is meant),
   *   name an unknown option, or an option has the wrong type (nothing is sent)
   * @throws {RangeError} the timeout is negative or NaN
   * @throws {LockUnavailableError} not granted within the timeout
   * @throws {DeadlockError} the wait would close a cycle of waiters
   * @throws {InvalidKeyError} with raw keys: the key is not one protocol word
   * @throws {SessionLostError} `within` is lost, or the session was lost while asking
   * @throws {ConnectionClosedError} the connection dropped or is closed
   * @throws the signal's reason when aborted
   *
   * @example
   * ```ts ignore
   * await using lock = await client.acquire("invoice-42", { timeout: 5000 });
   * await using line = await client.acquire("invoice-42/line-1", { within: lock });
   * ```
   */
  async acquire(key: string, options: AcquireOptions = {}): Promise<HeldLock> {
    checkLockOptions("acquire()", options, true);
    this.#checkOpen();
    const value = options.value ?? null;
    const timeout = timeoutOf(options.timeout);
    const { signal, within } = options;
    const keyWord = this.#word(key, "key");
    const valueWord = value === null ? null : this.#word(value, "value");
    if (within !== undefined && !(within instanceof HeldLock)) {
      throw new TypeError("acquire(): within must be a HeldLock");
    }
    if (signal?.aborted) throw signal.reason;
    const startedAt = Date.now();
    const left = () => Math.max(0, startedAt + timeout - Date.now());
    const [wire, valueWire] = await Promise.all([keyWord, valueWord]);
    // Behind a request of this client for the key: held (or about to be) by another session.
    const held = (error: unknown) => {
      if (error instanceof DeadlineError) throw new LockUnavailableError(key, { timeout });
      throw error;
    };
    const busy = (error: unknown) => {
      if (error instanceof DeadlineError) {
        throw new LockUnavailableError(key, {
          reply: `every session of the pool (poolSize ${this.#settings.poolSize}) was in use`,
        });
      }
      throw error;
    };
    const nested = within === undefined ? null : sessionOf(within) as Session;
    if (within !== undefined && (within.lost || within.released || nested === null)) {
      throw within.lost ? within.signal.reason : new TypeError("acquire(): within is released");
    }
    // Nested in a lock of the same key: re-entrant on its session, not queued behind it.
    const queued = nested === null || within?.key !== key;
    const turn = queued
      ? await this.#local.enter(wire, valueWire, { deadline: timeout === 0 ? 0 : left(), signal })
        .catch(held)
      : null;
    let session: Session | null = nested;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      turn?.leave();
      if (nested === null && session !== null) this.#pool.give(session);
    };
    try {
      session ??= await this.#pool.lease({ deadline: left(), signal, key: wire }).catch(busy);
      const lock = new HeldLock(key, value, session);
      // A lost lock lets the next request of this client in at once, as the server does.
      const claim = {
        lose: (error: SessionLostError) => {
          loseLock(lock, error);
          finish();
        },
      };
      const { outcome, reply } = await session.lock(
        wire,
        valueWire,
        { timeout: timeout === 0 ? 0 : left(), signal },
        claim,
      ).finally(() => this.#pool.poke());
      if (outcome !== "granted") {
        throw new LockUnavailableError(
          key,
          reply === null ? { timeout } : { timeout, reply: replyLine(reply) },
        );
      }
      const held = session;
      bindRelease(lock, (lost) => {
        if (lost) {
          held.ledger.unclaim(wire, claim);
          finish();
          return Promise.resolve(false);
        }
        return held.release(wire, claim).finally(finish);
      });
      if (options.fence === true) await this.#fence(lock, held, wire);
      return lock;
    } catch (error) {
      finish();
      throw error;
    }
  }

  /**
   * Runs `fn` while holding `key`, and releases it when `fn` settles.
   *
   * Waiting: `lock()`, `lockValue()`, `acquire()` and `withLock()` do not wait
   * unless given a `timeout` (in ms; `Infinity` waits until granted), while
   * `locks.request()` and `elock lock` wait until granted unless given
   * `ifAvailable` or `--timeout`.
   *
   * If the lock is lost while `fn` runs (its `signal` aborts: watch it), it
   * is not unlocked, and `withLock` rejects with a
   * {@linkcode SessionLostError} as soon as `fn` settles, whose `cause` is
   * `fn`'s error or `{ result }`.
   *
   * @param key the key
   * @param fn the work; gets the held lock
   * @param options as for {@linkcode ELockClient.acquire}
   * @returns what `fn` returns
   * @throws {LockUnavailableError} not granted within the timeout (`fn` not called)
   * @throws {TypeError} `fn` is not a function, or the options are wrong, as for
   *   {@linkcode ELockClient.acquire}
   * @throws {SessionLostError} the lock was lost before `fn` settled or while it was released
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
    if (typeof fn !== "function") {
      throw new TypeError(
        typeof options === "function"
          ? "withLock(): the function comes second, the options third: withLock(key, fn, options)"
          : `withLock(): fn must be a function, got ${describe(fn)}`,
      );
    }
    checkLockOptions("withLock()", options, true);
    const lock = await this.acquire(key, options);
    let outcome: { result: T } | { error: unknown };
    try {
      outcome = { result: await fn(lock) };
    } catch (error) {
      outcome = { error };
    }
    const released = lock.lost ? false : await lock.release();
    if (lock.lost || !released) {
      const reason = lock.signal.reason;
      if (reason instanceof SessionLostError) {
        throw new SessionLostError(
          reason.sessionId,
          reason.keys,
          `withLock(): the lock was lost before its function settled (${reason.message})`,
          { cause: "error" in outcome ? outcome.error : outcome },
        );
      }
    }
    if ("error" in outcome) throw outcome.error;
    return outcome.result;
  }

  /** Sends a raw `lock`/`lock_value` on the client's own session. */
  async #rawLock(key: string, value: string | null, options: LockOptions): Promise<boolean> {
    checkLockOptions(value === null ? "lock()" : "lockValue()", options, false);
    this.#checkOpen();
    const timeout = timeoutOf(options.timeout);
    const keyWord = this.#word(key, "key");
    const valueWord = value === null ? null : this.#word(value, "value");
    const { outcome } = await this.#primary.lock(
      keyWord,
      valueWord,
      { timeout, signal: options.signal },
      "raw",
    );
    return outcome === "granted";
  }

  /**
   * Throws when the client is closed: an error made here, so that its stack
   * is the caller's (the connection's own failure, made when it closed, is
   * its `cause`).
   */
  #checkOpen(): void {
    if (!this.closed) return;
    const failure = this.#primary.connection.failure;
    if (failure instanceof ProtocolError) {
      throw new ProtocolError(failure.message, { cause: failure });
    }
    if (failure === null || failure instanceof ConnectionClosedError) {
      throw new ConnectionClosedError(failure?.message ?? "Connection closed", {
        cause: failure ?? undefined,
      });
    }
    throw failure;
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

  /** Asks the fencing token of a grant; releases the lock when it cannot be had. */
  async #fence(lock: HeldLock, session: Session, wire: string): Promise<void> {
    let reply: Reply;
    try {
      reply = await session.request(fenceCommand(wire), { retry: true });
    } catch (error) {
      await lock.release().catch(() => {});
      throw error;
    }
    if (reply.code === 200 && /^[0-9]{1,30}$/.test(reply.message)) {
      // Lost while the token was asked (the lease ran out): not handed out as held.
      if (lock.lost) throw lock.signal.reason;
      lock.token = BigInt(reply.message);
      return;
    }
    await lock.release().catch(() => {});
    if (reply.code === 400 || reply.code === 500) {
      throw new UnsupportedCommandError("fence", replyLine(reply));
    }
    // 403: the session no longer holds it (lost meanwhile: the handle says so).
    if (lock.lost) throw lock.signal.reason;
    throw unexpected(`fence ${wire}`, reply);
  }

  /** The sessions of the pool besides the client's own. */
  #others(): Session[] {
    return this.#pool.sessions.filter((session) => session !== this.#primary);
  }

  /** Releases what a pool session holds (unless reconnecting), then closes it. */
  async #endSession(session: Session): Promise<void> {
    if (!session.closed && session.connection.down === null && session.ledger.holding) {
      await session.unlockAll().catch(() => {});
    }
    await session.close();
  }

  /** The client's own session is now another one (`conn_id ID`): its handles are lost. */
  #replaceSession(id: string, reason: string): void {
    const primary = this.#primary;
    primary.ledger.lose(new SessionLostError(primary.id ?? "", primary.ledger.keys(), reason));
    primary.id = id;
  }

  /** Keeps what the client knows of its session right after a raw command succeeded. */
  #noteRaw(words: string[], reply: Reply): void {
    const [command, argument] = words;
    const primary = this.#primary;
    // What raw commands lock and unlock counts in the ledger, as for lock() and unlock().
    if ((command === "lock" || command === "lock_value") && argument !== undefined) {
      primary.ledger.rawLocked(argument);
      primary.ledger.noteGrant(reply);
    }
    if (command === "unlock" && words.length === 2 && argument !== undefined) {
      primary.ledger.unlocked(
        argument,
        { code: 200, message: "", lines: [] },
        () => new SessionLostError(primary.id ?? "", [argument], "command(unlock) released it"),
      );
    }
    if (command === "unlock_all" || command === "quit") {
      primary.ledger.unlockedAll(
        new SessionLostError(primary.id ?? "", [], `${command} released every lock`),
      );
    }
    if (command === "set_timeout" && words.length === 2 && /^[0-9]+$/.test(argument ?? "")) {
      primary.releaseTimeout = Number(argument);
    }
    if (command === "conn_id") primary.pinned = true;
    if (command === "conn_id" && words.length === 2 && argument !== undefined) {
      this.#replaceSession(argument, "conn_id replaced it");
    }
  }

  #dispatch(type: ELockClientEventType, init?: ELockClientEventInit): void {
    this.dispatchEvent(new ELockClientEvent(type, init));
  }
}

function timeoutOf(timeout: number | undefined): number {
  const ms = timeout ?? 0;
  if (typeof ms !== "number" || Number.isNaN(ms) || ms < 0) {
    throw new RangeError(`Invalid timeout: ${String(ms)} ms`);
  }
  return ms;
}
