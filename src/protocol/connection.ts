/**
 * One connection to an eLock server: sends commands in call order and
 * matches each reply to its request.
 *
 * Commands the server answers at once are pipelined (written together,
 * replies read in order). A waiting `lock`/`lock_value` and `quit` are
 * barriers: nothing is written behind them until they are answered, because
 * the extended reference server answers out of order otherwise. A caller
 * that gives up on a sent request (deadline or abort) is answered at once;
 * the reply, when it comes, goes to the request's `onUnseenReply`.
 *
 * When the connection drops and {@linkcode ConnectionOptions.onDrop} keeps
 * it, the calls wait for {@linkcode Connection.adopt} of a new connection:
 * requests sent but not answered are sent again if they are marked `retry`,
 * the others reject; queued ones stay queued.
 *
 * Runtime-neutral: runs on any {@linkcode TransportConnection}.
 *
 * @module
 */

import { ConnectionClosedError, ELockError, ProtocolError } from "../errors.ts";
import type { RawSocket, TransportConnection } from "../transport/transport.ts";
import { concat } from "./line_splitter.ts";
import { type Reply, replyLine, ReplyParser, ReplyReader } from "./reply_reader.ts";

/**
 * Receives one line per request and reply. `console` fits.
 *
 * @example
 * ```ts
 * const logger: Logger = { debug: (message) => console.debug(message) };
 * ```
 */
export interface Logger {
  /** Called with a message such as `elock > lock k 5` or `elock < 200 Acquired`. */
  debug(message: string): void;
}

/** Options of {@linkcode Connection}. */
export interface ConnectionOptions {
  /** Longest time to wait for a reply, in ms, on top of a lock's own wait. */
  commandTimeout: number;
  /** Longest reply line accepted, in bytes. */
  maxLineLength?: number;
  /** Gets each request and reply line. */
  logger?: Logger | undefined;
  /**
   * Called when the connection drops (the stream ended or failed, a reply
   * is overdue, or a protocol error), but not on
   * {@linkcode Connection.close}. Returning `true` keeps the calls (not
   * after a protocol error): they wait for {@linkcode Connection.adopt}.
   * Returning `false` (or no callback) fails them all.
   */
  onDrop?: ((error: ELockError) => boolean) | undefined;
  /** Called on every reply, before its caller gets it (a sign of life of the session). */
  onAnyReply?: (() => void) | undefined;
}

/** Options of {@linkcode Connection.request}. */
export interface RequestOptions {
  /** Nothing is sent behind this request until it is answered. */
  barrier?: boolean;
  /** How much longer than the command timeout the server may take (a lock's wait), in ms. */
  waitMs?: number;
  /** Gives up when aborted: rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
  /** Gives up after this many ms: rejects with a {@linkcode DeadlineError}. */
  deadline?: number | undefined;
  /**
   * Gets the reply its caller did not see: one that came after the caller
   * gave up (deadline or abort), or `null` when the reply was lost with the
   * connection and the request is not sent again.
   */
  onUnseenReply?: (reply: Reply | null) => void;
  /** Goes to the head of the queue, and may be sent while a task runs. */
  urgent?: boolean;
  /**
   * Sent again on the next connection when the connection drops after the
   * request was sent and before its reply came (only for commands whose
   * repetition is harmless), at most 3 times. Not after a command timeout:
   * the caller is then answered with the timeout error.
   */
  retry?: boolean;
  /** Called when the request is sent again on a new connection. */
  onRetry?: () => void;
  /** Called, in wire order, each time the request is written (again after a drop). */
  onSend?: () => void;
  /** Called with the reply, in wire order, right before its caller gets it. */
  onReply?: (reply: Reply) => void;
  /** Called when the caller gives up (deadline or abort), at once. */
  onGiveUp?: () => void;
  /**
   * Asked right before each write: `false` rejects the request unsent (with
   * a {@linkcode ConnectionClosedError}), e.g. an unlock meant for a
   * session that was lost while it waited to be sent again.
   */
  sendable?: () => boolean;
  /** How long to wait for this request's reply, in ms, instead of the command timeout. */
  replyTimeout?: number;
  /**
   * A waiting lock whose caller gave up may be left on its connection by
   * {@linkcode Connection.leaveWait} (its session may end with it).
   */
  leavable?: boolean;
}

/** The rejection of a request whose deadline passed. @internal */
export class DeadlineError extends Error {
  /** Creates it. */
  constructor() {
    super("Deadline reached");
    this.name = "DeadlineError";
  }
}

interface Item {
  kind: "command";
  bytes: Uint8Array | null;
  prepared: Promise<void> | null;
  error: unknown;
  options: RequestOptions;
  state: "queued" | "sent" | "done" | "abandoned";
  /** How many times it was sent again after a drop. */
  retries: number;
  /** When its reply is overdue (`Date.now()` ms), fixed when it is sent. */
  dueAt: number;
  resolve(reply: Reply): void;
  reject(error: unknown): void;
  cleanup(): void;
}

interface Task {
  kind: "task";
  run(): Promise<void>;
  reject(error: unknown): void;
}

const decoder = new TextDecoder();
const NOOP = (): void => {};

/**
 * How many times a request is sent again after drops: a command that brings
 * the connection down each time it is sent must not be sent forever.
 */
const MAX_RETRIES = 3;

/**
 * How many connections left by {@linkcode Connection.leaveWait} may be open
 * at once, waiting for the answers to their waits; with that many, a wait
 * is not left (it keeps its connection until it ends).
 */
const MAX_LEFT = 4;

/**
 * A connection to an eLock server over a transport connection.
 *
 * @example
 * ```ts ignore
 * const connection = new Connection(await transport.connect({ host, port }), {
 *   commandTimeout: 30_000,
 * });
 * const reply = await connection.request(new TextEncoder().encode("conn_id\n"));
 * ```
 */
export class Connection {
  readonly #options: ConnectionOptions;
  #wire: Wire;
  #queue: (Item | Task)[] = [];
  #inflight: Item[] = [];
  #pumping = false;
  #again = false;
  #taskRunning = false;
  #failure: ELockError | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the pending timer fires, and when the head of `#inflight` is overdue (`Date.now()` ms). */
  #timerAt = Infinity;
  #dueAt = Infinity;
  #limit = 0;
  #sent = false;
  #down: ConnectionClosedError | null = null;
  #dropped: Promise<void> = Promise.resolve();
  /** Transport connections left by {@linkcode Connection.leaveWait}, still open. */
  readonly #left = new Set<LeftWire>();
  /** Counts pump loops: a loop left behind by {@linkcode Connection.leaveWait} stops. */
  #pumpRun = 0;

  /**
   * Starts reading replies from the stream.
   *
   * @param stream the open transport connection
   * @param options command timeout, line limit, logger
   */
  constructor(stream: TransportConnection, options: ConnectionOptions) {
    this.#options = options;
    this.#wire = new Wire(stream, this, options.maxLineLength);
  }

  /** Whether anything has been written on this connection. */
  get sentAny(): boolean {
    return this.#sent;
  }

  /** The error the connection failed with, or `null` while it is open. */
  get failure(): ELockError | null {
    return this.#failure;
  }

  /** Whether nothing is queued, in flight or running, and the connection is up. */
  get idle(): boolean {
    return this.#inflight.length === 0 && this.#queue.length === 0 && !this.#taskRunning &&
      this.#down === null && this.#failure === null;
  }

  /** Whether a waiting lock (a barrier) is in flight: nothing else is sent until it is answered. */
  get waiting(): boolean {
    return this.#inflight.at(-1)?.options.barrier === true;
  }

  /**
   * Whether the only request in flight is a waiting lock whose caller gave
   * up: the connection is held by a wait nobody will see the end of.
   */
  get abandonedWait(): boolean {
    const only = this.#inflight[0];
    return this.#inflight.length === 1 && only!.kind === "command" &&
      only!.state === "abandoned" && only!.options.barrier === true;
  }

  /**
   * Leaves the transport connection held by an abandoned wait, at once: the
   * connection drops as if it had broken (so that
   * {@linkcode ConnectionOptions.onDrop} connects again, and the calls
   * queued behind the wait go to the new one), but the old transport
   * connection is not closed. It waits out the server's answer to the wait
   * (at most the wait's reply deadline, plus a second); then `farewell` is
   * written on it and, once answered, it is closed. It is not closed while
   * the server may still answer the wait, unless that deadline passes or
   * the client closes (then `farewell` is written first): some servers keep
   * the waiter of a closed connection and grant it, and one of them exits
   * when it writes that grant to the closed connection. Only a wait sent
   * with {@linkcode RequestOptions.leavable} is left.
   *
   * @param farewell ends the old session once written (`set_timeout 0`: its
   *   locks, a late grant included, go when the connection closes)
   * @param leaving called when it is left, right before the drop is reported
   * @returns whether it was left (`false`: not up, not held by an abandoned
   *   leavable wait, or {@linkcode MAX_LEFT} connections left are still open)
   */
  leaveWait(farewell: Uint8Array, leaving: () => void): boolean {
    if (this.#failure !== null || this.#down !== null || !this.abandonedWait) return false;
    if (this.#inflight[0]!.options.leavable !== true) return false;
    // Each left connection may hold a place in a key's queue until its wait ends: a few at most.
    if (this.#left.size >= MAX_LEFT) return false;
    const wire = this.#wire;
    const wait = this.#inflight[0]!;
    wait.state = "done";
    wait.cleanup();
    this.#inflight = [];
    const left = new LeftWire(wire, farewell, wait.dueAt, this.#options.commandTimeout, (gone) => {
      this.#left.delete(gone);
    });
    this.#left.add(left);
    // A write of the wait still under way (a full send buffer) must not hold the next connection.
    this.#pumpRun++;
    this.#pumping = false;
    leaving();
    this.#drop(new ConnectionClosedError("Connection closed: left after an abandoned wait"), false);
    return true;
  }

  /**
   * Resolves once the transport connection of the last drop is closed (the
   * server has seen it end, or the transport stopped waiting for that).
   */
  get dropped(): Promise<void> {
    return this.#dropped;
  }

  /** Why the connection dropped, while it waits for {@linkcode Connection.adopt}; else `null`. */
  get down(): ConnectionClosedError | null {
    return this.#down;
  }

  /**
   * Sends a command (in call order) and resolves with its reply.
   *
   * @param bytes the command line, or a promise of it (rejecting keeps it unsent)
   * @param options barrier, wait, signal, deadline
   * @returns the reply
   */
  request(bytes: Uint8Array | Promise<Uint8Array>, options: RequestOptions = {}): Promise<Reply> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    return new Promise<Reply>((resolve, reject) => {
      const item: Item = {
        kind: "command",
        bytes: null,
        prepared: null,
        error: undefined,
        options,
        state: "queued",
        retries: 0,
        dueAt: Infinity,
        resolve,
        reject,
        cleanup: NOOP,
      };
      if (bytes instanceof Uint8Array) item.bytes = bytes;
      else {
        item.prepared = bytes.then((b) => void (item.bytes = b), (e) => void (item.error = e));
      }
      this.#watch(item);
      if (options.urgent) this.#queue.unshift(item);
      else this.#queue.push(item);
      this.#kick();
    });
  }

  /**
   * Runs `task` when every earlier call is answered, holding back later
   * calls until it settles. Inside it, send with `{ urgent: true }`.
   *
   * @param task the work to do alone on the connection
   * @returns what the task returns
   */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({
        kind: "task",
        run: () => task().then(resolve, reject),
        reject,
      });
      this.#kick();
    });
  }

  /**
   * Takes over the transport connection of `other` (idle, just opened) and
   * closes this one's: later requests go to the new server connection. After
   * a drop, this is how the connection comes back up.
   *
   * @param other an idle connection
   */
  adopt(other: Connection): void {
    const old = this.#wire;
    this.#wire = other.#wire;
    this.#wire.owner = this;
    other.#wire = old;
    other.#failure = new ConnectionClosedError("Connection closed: adopted by another");
    other.#stopTimer();
    this.#sent = true;
    this.#down = null;
    void release(old);
    this.#kick();
  }

  /**
   * Closes the connection: every pending and queued call rejects with
   * {@linkcode ConnectionClosedError}.
   *
   * @param message the error message
   */
  async close(message = "Connection closed: by the client"): Promise<void> {
    this.fail(new ConnectionClosedError(message));
    await release(this.#wire);
  }

  /** Fails the connection with `error`: rejects everything, closes the stream. @internal */
  fail(error: ELockError): void {
    if (this.#failure !== null) return;
    this.#failure = error;
    this.#down = null;
    this.#stopTimer();
    const items = [...this.#inflight, ...this.#queue];
    this.#inflight = [];
    this.#queue = [];
    const others = error instanceof ConnectionClosedError
      ? error
      : new ConnectionClosedError(`Connection closed: ${error.message}`, { cause: error });
    items.forEach((item, i) => {
      if (item.kind === "command" && item.state === "abandoned") item.options.onUnseenReply?.(null);
      if (item.kind === "command" && (item.state === "done" || item.state === "abandoned")) return;
      if (item.kind === "command") {
        item.state = "done";
        item.cleanup();
      }
      item.reject(i === 0 ? error : others);
    });
    for (const left of [...this.#left]) left.abandon();
    void release(this.#wire);
  }

  /**
   * The connection dropped: unless {@linkcode ConnectionOptions.onDrop}
   * keeps the calls, fails it. A protocol error always fails it.
   *
   * @param error why
   * @param overdue whether a reply was overdue (nothing is retried then)
   */
  #drop(error: ELockError, overdue: boolean): void {
    if (this.#failure !== null || this.#down !== null) return;
    let closed = () => {};
    this.#dropped = new Promise<void>((resolve) => void (closed = resolve));
    const keep = this.#options.onDrop?.(error) === true;
    if (!keep || error instanceof ProtocolError || !(error instanceof ConnectionClosedError)) {
      closed();
      this.fail(error);
      return;
    }
    this.#down = error;
    this.#stopTimer();
    const inflight = this.#inflight;
    this.#inflight = [];
    const again: Item[] = [];
    for (const item of inflight) {
      if (item.state === "abandoned") {
        item.state = "done";
        item.options.onUnseenReply?.(null);
      } else if (item.state !== "sent") continue;
      else if (item.options.retry && !overdue && item.retries < MAX_RETRIES) {
        item.retries++;
        item.state = "queued";
        item.options.onRetry?.();
        again.push(item);
      } else {
        item.state = "done";
        item.cleanup();
        item.reject(error);
        item.options.onUnseenReply?.(null);
      }
    }
    this.#queue.unshift(...again);
    void release(this.#wire).then(closed);
  }

  /** The wire's stream ended or failed. @internal */
  onWireError(error: ELockError): void {
    this.#drop(error, false);
  }

  /** A reply came from the wire. @internal */
  onReply(reply: Reply): void {
    const item = this.#inflight.shift();
    if (item === undefined) {
      this.fail(new ConnectionClosedError(`Connection closed: unexpected reply: ${text(reply)}`));
      return;
    }
    this.#options.logger?.debug(`elock < ${text(reply)}`);
    this.#options.onAnyReply?.();
    if (item.state === "abandoned") {
      item.state = "done";
      item.cleanup();
      item.options.onUnseenReply?.(reply);
    } else {
      item.state = "done";
      item.cleanup();
      item.options.onReply?.(reply);
      item.resolve(reply);
    }
    this.#armTimer();
    this.#kick();
  }

  #watch(item: Item): void {
    const { signal, deadline } = item.options;
    if (signal === undefined && deadline === undefined) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const giveUp = (reason: unknown) => {
      if (item.state === "queued") {
        const at = this.#queue.indexOf(item);
        if (at >= 0) this.#queue.splice(at, 1);
        item.state = "done";
      } else if (item.state === "sent") {
        item.state = "abandoned";
      } else return;
      item.cleanup();
      item.options.onGiveUp?.();
      // Queued again after a drop: it may have been granted on the connection that dropped.
      if (item.state === "done" && item.retries > 0) item.options.onUnseenReply?.(null);
      item.reject(reason);
    };
    const onAbort = () => giveUp(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (deadline !== undefined && Number.isFinite(deadline)) {
      timer = setTimeout(() => giveUp(new DeadlineError()), Math.max(0, deadline));
    }
    item.cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
  }

  #kick(): void {
    if (this.#failure !== null || this.#down !== null) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    void this.#pump();
  }

  /**
   * Sends what may be sent. `#pumping` is cleared in the same tick as the
   * loop ends, so a request made right after is never missed.
   */
  async #pump(): Promise<void> {
    const run = this.#pumpRun;
    try {
      for (;;) {
        this.#again = false;
        const batch: Uint8Array[] = [];
        let size = 0;
        for (;;) {
          // Nothing is sent behind a barrier, so one in flight is always the last item.
          if (this.#failure !== null || this.#down !== null || run !== this.#pumpRun) break;
          if (this.#inflight.at(-1)?.options.barrier) break;
          const head = this.#queue[0];
          if (head === undefined || size >= 65536) break;
          if (head.kind === "task") {
            if (batch.length > 0 || this.#inflight.length > 0 || this.#taskRunning) break;
            this.#queue.shift();
            this.#runTask(head);
            break;
          }
          if (this.#taskRunning && !head.options.urgent) break;
          if (head.bytes === null && head.error === undefined) {
            if (batch.length > 0) break;
            await head.prepared;
            continue;
          }
          this.#queue.shift();
          if (head.state !== "queued") continue;
          if (head.error !== undefined) {
            head.state = "done";
            head.cleanup();
            head.reject(head.error);
            continue;
          }
          if (head.options.sendable?.() === false) {
            head.state = "done";
            head.cleanup();
            head.reject(new ConnectionClosedError("Not sent: its session was lost"));
            continue;
          }
          head.state = "sent";
          head.dueAt = Date.now() + (head.options.replyTimeout ?? this.#options.commandTimeout) +
            (head.options.waitMs ?? 0);
          head.options.onSend?.();
          this.#inflight.push(head);
          batch.push(head.bytes!);
          size += head.bytes!.length;
          if (this.#options.logger) {
            this.#options.logger.debug(`elock > ${decoder.decode(head.bytes!).trimEnd()}`);
          }
          if (head.options.barrier) break;
        }
        // A batch is only started with nothing awaited, so a drop leaves it empty.
        if (this.#failure !== null || this.#down !== null || run !== this.#pumpRun) return;
        if (batch.length === 0) {
          if (this.#again) continue;
          return;
        }
        this.#sent = true;
        this.#armTimer();
        const wire = this.#wire;
        try {
          await wire.write(concat(batch, size));
        } catch (cause) {
          if (wire === this.#wire) {
            this.#drop(
              new ConnectionClosedError("Connection closed: write failed", { cause }),
              false,
            );
          }
          return;
        }
      }
    } finally {
      if (run === this.#pumpRun) this.#pumping = false;
    }
  }

  #runTask(task: Task): void {
    this.#taskRunning = true;
    void task.run().finally(() => {
      this.#taskRunning = false;
      this.#kick();
    });
  }

  /**
   * Watches the head of `#inflight`: its reply is overdue at the deadline
   * fixed when it was sent (not re-armed by later writes, so a client that
   * keeps sending still notices a reply that never comes). One timer runs
   * at a time and is re-armed when it fires early: setting and clearing a
   * timer per reply costs more than the rest of a round trip's client work
   * on Deno.
   */
  #armTimer(): void {
    const head = this.#inflight[0];
    this.#limit = head === undefined || this.#failure !== null
      ? Infinity
      : (head.options.replyTimeout ?? this.#options.commandTimeout) + (head.options.waitMs ?? 0);
    this.#dueAt = head === undefined || this.#failure !== null ? Infinity : head.dueAt;
    if (this.#dueAt < this.#timerAt) this.#startTimer();
  }

  #stopTimer(): void {
    clearTimeout(this.#timer);
    this.#timerAt = Infinity;
    this.#dueAt = Infinity;
  }

  #startTimer(): void {
    clearTimeout(this.#timer);
    this.#timerAt = this.#dueAt;
    if (this.#dueAt === Infinity) return;
    this.#timer = setTimeout(() => {
      this.#timerAt = Infinity;
      if (this.#failure !== null || this.#down !== null || this.#dueAt === Infinity) return;
      if (Date.now() < this.#dueAt) {
        this.#startTimer();
        return;
      }
      this.#drop(
        new ConnectionClosedError(`Connection closed: no reply within ${this.#limit} ms`),
        true,
      );
    }, Math.min(Math.max(0, this.#dueAt - Date.now()), 2 ** 31 - 1));
  }
}

/**
 * Closes `wire` for its connection, unless {@linkcode Connection.leaveWait}
 * handed it to a {@linkcode LeftWire}, which closes it once the server has
 * answered on it.
 */
function release(wire: Wire): Promise<void> {
  if (wire.owner instanceof LeftWire) return RESOLVED;
  wire.owner = null;
  return wire.close();
}

/** Who gets what comes from a {@linkcode Wire}. */
interface WireOwner {
  onReply(reply: Reply): void;
  onWireError(error: ELockError): void;
}

/**
 * A transport connection left by {@linkcode Connection.leaveWait}: the
 * first reply on it answers the abandoned wait. Then `farewell` is written
 * and, once it is answered, the connection closed: the server ends the
 * session at once, freeing a grant that crossed the abort. Closed before the
 * wait is answered ({@linkcode abandon}: its deadline passed, or the client
 * closes), it writes `farewell` and closes.
 */
class LeftWire implements WireOwner {
  readonly #wire: Wire;
  readonly #farewell: Uint8Array;
  readonly #commandTimeout: number;
  readonly #gone: (left: LeftWire) => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The wait was answered, and the farewell written: its reply closes it. */
  #answered = false;
  #leaving = false;
  #closed = false;

  constructor(
    wire: Wire,
    farewell: Uint8Array,
    dueAt: number,
    commandTimeout: number,
    gone: (left: LeftWire) => void,
  ) {
    this.#wire = wire;
    this.#farewell = farewell;
    this.#commandTimeout = commandTimeout;
    this.#gone = gone;
    wire.owner = this;
    // The server counts a wait in whole seconds, rounded up: up to a second past the client's.
    this.#arm(dueAt + 1000 - Date.now(), () => this.abandon());
  }

  onReply(): void {
    if (this.#closed) return;
    if (this.#answered || this.#leaving) {
      this.close();
      return;
    }
    // Whatever the answer: nothing is written before it (a server may run commands sent behind
    // a wait out of order), and nothing is closed before the farewell is answered (a server may
    // write to a connection closed under it, and exit).
    this.#answered = true;
    this.#arm(this.#commandTimeout, () => this.close());
    this.#wire.write(this.#farewell).catch(() => this.close());
  }

  onWireError(): void {
    // A reply that makes no sense: the farewell still goes (a late grant then goes with the
    // session); a stream that ended takes the write harmlessly.
    if (this.#answered) this.close();
    else this.abandon();
  }

  /** Closes it without waiting for the answer to the wait: `farewell` first. */
  abandon(): void {
    if (this.#closed || this.#leaving) return;
    this.#leaving = true;
    this.#gone(this);
    if (this.#answered) {
      // The farewell is on its way: its reply (or the timer armed for it) closes it.
      return;
    }
    // A write that never completes (a full send buffer on a dead link) holds it at most this long.
    this.#arm(this.#commandTimeout, () => this.close());
    this.#wire.write(this.#farewell).then(() => this.close(), () => this.close());
  }

  /** Closes the transport connection. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#wire.owner = null;
    void this.#wire.close();
    this.#gone(this);
  }

  #arm(ms: number, then: () => void): void {
    clearTimeout(this.#timer);
    const at = Date.now() + ms;
    // Timers run at most 2^31 - 1 ms: a longer wait (up to about 24.8 days) is armed again.
    const tick = () => {
      const left = at - Date.now();
      if (left > 0) this.#timer = setTimeout(tick, Math.min(left, 2 ** 31 - 1));
      else then();
    };
    this.#timer = setTimeout(tick, Math.min(Math.max(0, ms), 2 ** 31 - 1));
  }
}

/** The streams of one transport connection, with a read loop. */
class Wire {
  owner: WireOwner | null;
  readonly #stream: TransportConnection;
  /** Streams, for a transport without {@linkcode TransportConnection.raw}. */
  readonly #reader: ReplyReader | null = null;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array> | null = null;
  readonly #raw: RawSocket | null = null;
  #closing: Promise<void> | null = null;

  constructor(stream: TransportConnection, owner: WireOwner, maxLineLength: number | undefined) {
    this.owner = owner;
    this.#stream = stream;
    const limits = maxLineLength === undefined ? {} : { maxLineLength };
    const raw = stream.raw;
    if (raw !== undefined) {
      // Callbacks: each reply handled as its bytes arrive, without a promise per reply.
      this.#raw = raw;
      const parser = new ReplyParser(
        (reply) => this.owner?.onReply(reply),
        (error) => {
          if (this.#closing === null) this.owner?.onWireError(error);
        },
        limits,
      );
      raw.start({ data: (bytes) => parser.push(bytes), end: (error) => parser.end(error) });
      return;
    }
    this.#reader = new ReplyReader(stream.readable, limits);
    this.#writer = stream.writable.getWriter();
    this.#writer.closed.catch(() => {});
    void this.#readLoop(this.#reader);
  }

  write(bytes: Uint8Array): Promise<void> {
    const raw = this.#raw;
    if (raw === null) return this.#writer!.write(bytes);
    try {
      return raw.write(bytes) ? RESOLVED : raw.drained();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Closes the streams; every call returns the same promise. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#reader?.cancel().catch(() => {});
      await this.#writer?.abort().catch(() => {});
      await this.#stream.close().catch(() => {});
    })();
    return this.#closing;
  }

  async #readLoop(reader: ReplyReader): Promise<void> {
    for (;;) {
      let reply: Reply;
      try {
        reply = await reader.read();
      } catch (error) {
        if (this.#closing === null) {
          this.owner?.onWireError(
            error instanceof ELockError
              ? error
              : new ConnectionClosedError("Connection closed: read failed", { cause: error }),
          );
        }
        return;
      }
      this.owner?.onReply(reply);
    }
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

function text(reply: Reply): string {
  const first = replyLine(reply);
  return reply.lines.length === 0 ? first : `${first} (+${reply.lines.length} lines)`;
}
