/**
 * A small imitation of the Erlang eLock server (the `original` dialect), for
 * the one behaviour the bundled server deliberately does not reproduce:
 * `conn_id ID` as the first command of a connection claims any id that is
 * not connected now. A disconnected session that has not expired is resumed
 * with its locks; an id the server does not know (one whose session expired
 * and released its locks) is taken as a new, empty session, and the answer
 * is the same `200 conn id set` either way.
 *
 * Commands: `lock KEY [SECONDS]` (waiters first come, first served),
 * `unlock KEY`, `unlock_all`, `conn_id [ID]`, `set_timeout MS`, `stats`,
 * `quit`; a connection's commands run one after another; replies end in
 * `\r\n`. {@linkcode ErlangLikeServer.hold} keeps connections accepted from
 * then on unanswered (their lines are kept) until
 * {@linkcode ErlangLikeServer.release}: a reconnection that is slow to get
 * through.
 *
 * {@linkcode ReferenceLikeOptions.closedWaiters} brings in what the
 * reference servers do with a waiter whose connection closed, which the
 * bundled server does not: the Erlang one keeps it queued, grants it and
 * keeps the grant for the release timeout (its defect 4); the NodeJS one
 * keeps it too, and the write of the answer to the closed socket makes the
 * whole server exit (its defect 7). A command sent behind a waiting lock
 * runs after the wait ends here, as on both (the NodeJS one pauses its
 * socket during a wait), so it is lost when the connection closes first.
 *
 * @module
 */

import net from "node:net";

/** What {@linkcode startErlangLikeServer} imitates beyond the default. */
export interface ReferenceLikeOptions {
  /**
   * A waiter whose connection closed: `"drop"` (default) leaves the queue;
   * `"keep"` stays queued and, when granted, holds the key until its
   * session is disposed (the Erlang server); `"crash"` stays queued, and
   * the answer it gets (grant or timeout) brings the whole server down:
   * every connection is closed and nothing more is accepted (the NodeJS
   * server).
   */
  closedWaiters?: "drop" | "keep" | "crash";
  /**
   * The Erlang server's defect 9: a key handed over to a waiter stays on
   * the list of the session that released it, so that session's
   * `unlock_all`, or its end, frees the key the waiter now holds.
   */
  staleHandOff?: boolean;
}

/** The imitation server, listening on 127.0.0.1. */
export interface ErlangLikeServer extends AsyncDisposable {
  readonly port: number;
  /** Whether it went down, as the NodeJS server does (see {@linkcode ReferenceLikeOptions}). */
  readonly crashed: boolean;
  /** The id of the session holding `key`, or `null`. */
  holderOf(key: string): string | null;
  /** How many waiters the queue of `key` has (those of closed connections included). */
  waiting(key: string): number;
  /** From now on, new connections are accepted but not answered until {@linkcode release}. */
  hold(): void;
  /** Answers the connections held since {@linkcode hold}, and new ones at once again. */
  release(): void;
  close(): Promise<void>;
}

interface Session {
  readonly id: string;
  connected: boolean;
  releaseTimeout: number;
  readonly held: Set<string>;
  expiry: ReturnType<typeof setTimeout> | undefined;
}

interface Waiter {
  readonly session: Session;
  readonly key: string;
  readonly timer: ReturnType<typeof setTimeout>;
  settle(granted: boolean): void;
}

/** Starts the imitation server on a free port. */
export async function startErlangLikeServer(
  options: ReferenceLikeOptions = {},
): Promise<ErlangLikeServer> {
  const closedWaiters = options.closedWaiters ?? "drop";
  let crashed = false;
  const sessions = new Map<string, Session>();
  const holders = new Map<string, Session>();
  const queues = new Map<string, Waiter[]>();
  const sockets = new Set<net.Socket>();
  const held: Array<() => void> = [];
  let holding = false;
  let nextId = 1;
  let closed = false;

  const newSession = (id?: string): Session => {
    while (id === undefined || sessions.has(id)) id = String(nextId++);
    const session: Session = {
      id,
      connected: true,
      releaseTimeout: 30_000,
      held: new Set(),
      expiry: undefined,
    };
    sessions.set(id, session);
    return session;
  };
  const grant = (session: Session, key: string) => {
    holders.set(key, session);
    session.held.add(key);
  };
  const release = (session: Session, key: string) => {
    const holder = holders.get(key);
    // Defect 9: a stale entry of an earlier holder releases the current holder's key.
    if (holder !== session && !(options.staleHandOff && session.held.has(key))) return;
    holders.delete(key);
    session.held.delete(key);
    holder?.held.delete(key);
    const next = queues.get(key)?.shift();
    if (next !== undefined) {
      clearTimeout(next.timer);
      grant(next.session, key);
      next.settle(true);
      // ... and the key stays on the releasing session's list.
      if (options.staleHandOff) session.held.add(key);
    }
  };
  const leaveQueue = (waiter: Waiter) => {
    const queue = queues.get(waiter.key) ?? [];
    const at = queue.indexOf(waiter);
    if (at >= 0) queue.splice(at, 1);
    clearTimeout(waiter.timer);
  };
  const dispose = (session: Session) => {
    for (const queue of queues.values()) {
      for (const w of queue.filter((w) => w.session === session)) leaveQueue(w);
    }
    clearTimeout(session.expiry);
    session.expiry = undefined;
    for (const key of [...session.held]) release(session, key);
    if (sessions.get(session.id) === session) sessions.delete(session.id);
  };

  const serve = (socket: net.Socket) => {
    let session: Session | null = null;
    let first = true;
    let waiter: Waiter | null = null;
    let busy = false;
    let gated = holding;
    let buffered = "";
    const lines: string[] = [];
    const current = () => session ??= newSession();
    let gone = false;
    const write = (text: string) => {
      if (gone && closedWaiters === "crash") void crash();
      if (!socket.destroyed && !gone) socket.write(text + "\r\n");
    };

    const execute = (line: string): string | Promise<string> => {
      const words = line.split(" ");
      const [command, a, b] = words;
      const wasFirst = first;
      first = false;
      if (command === "conn_id" && words.length === 2) {
        const target = sessions.get(a!);
        if (!wasFirst || target?.connected) return "403 cannot set conn id";
        if (target === undefined) session = newSession(a);
        else {
          clearTimeout(target.expiry);
          target.expiry = undefined;
          target.connected = true;
          session = target;
        }
        return "200 conn id set";
      }
      const me = current();
      if (command === "conn_id" && words.length === 1) return `200 ${me.id}`;
      if (command === "set_timeout" && words.length === 2 && /^\d+$/.test(a!)) {
        me.releaseTimeout = Number(a);
        return "200 timeout set";
      }
      if (command === "lock" && (words.length === 2 || /^\d+$/.test(b ?? ""))) {
        const holder = holders.get(a!);
        if (holder === undefined || holder === me) {
          grant(me, a!);
          return "200 Acquired";
        }
        const seconds = Number(b ?? 0);
        if (seconds <= 0) return "409 Unavailable";
        return new Promise((resolve) => {
          const w: Waiter = {
            session: me,
            key: a!,
            timer: setTimeout(() => {
              leaveQueue(w);
              waiter = null;
              resolve("409 Unavailable");
            }, seconds * 1000),
            settle: (granted) => {
              waiter = null;
              resolve(granted ? "200 Acquired" : "409 Unavailable");
            },
          };
          waiter = w;
          const queue = queues.get(a!) ?? [];
          queues.set(a!, queue);
          queue.push(w);
        });
      }
      if (command === "unlock" && words.length === 2) {
        const holder = holders.get(a!);
        if (holder === undefined) return "403 not_locked";
        if (holder !== me) return "403 not_yours";
        release(me, a!);
        return "200 Unlocked";
      }
      if (command === "unlock_all" && words.length === 1) {
        for (const key of [...me.held]) release(me, key);
        return "200 OK";
      }
      if (command === "stats" && words.length === 1) {
        return [
          "200 STATS",
          `STAT clients ${sockets.size}`,
          `STAT locks ${holders.size}`,
          "STAT monitoring 0",
          "END",
        ].join("\r\n");
      }
      if (command === "quit" && words.length === 1) {
        setTimeout(() => socket.end(), 0);
        return "200 Hey, it was nice seeing you.";
      }
      return `400 Unknown command: "${command}"`;
    };

    const pump = () => {
      while (!busy && !gated && lines.length > 0 && (!gone || closedWaiters === "keep")) {
        const reply = execute(lines.shift()!);
        if (typeof reply === "string") write(reply);
        else {
          busy = true;
          void reply.then((text) => {
            busy = false;
            write(text);
            pump();
          });
        }
      }
      if (gone && !busy && lines.length === 0) end();
    };
    // The session outlives its connection for its release timeout, counted once the server has
    // seen the close (after what it had read, when it runs that).
    let ended = false;
    const end = () => {
      if (ended || closed || session === null || !session.connected) return;
      ended = true;
      const left = session;
      left.connected = false;
      if (left.releaseTimeout <= 0) dispose(left);
      else left.expiry = setTimeout(() => dispose(left), left.releaseTimeout);
    };
    if (gated) {
      held.push(() => {
        gated = false;
        pump();
      });
    }

    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("data", (chunk: Uint8Array) => {
      buffered += new TextDecoder().decode(chunk);
      let end: number;
      while ((end = buffered.indexOf("\n")) >= 0) {
        lines.push(buffered.slice(0, end).replace(/\r$/, ""));
        buffered = buffered.slice(end + 1);
      }
      pump();
    });
    socket.on("close", () => {
      gone = true;
      sockets.delete(socket);
      // The Erlang server runs what it had read before it sees the close.
      if (closedWaiters !== "keep") lines.length = 0;
      if (waiter !== null && closedWaiters === "drop") {
        leaveQueue(waiter);
        waiter.settle(false);
      }
      // The NodeJS server counts the release timeout from the close, waits or not.
      if (closedWaiters !== "keep" || (!busy && lines.length === 0)) end();
    });
  };

  const server = net.createServer(serve);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const crash = async () => {
    if (crashed) return;
    crashed = true;
    await close();
  };
  const close = async () => {
    if (closed) return;
    closed = true;
    holding = false;
    held.length = 0;
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    for (const session of sessions.values()) clearTimeout(session.expiry);
    for (const queue of queues.values()) for (const w of queue) clearTimeout(w.timer);
  };
  return {
    port,
    get crashed() {
      return crashed;
    },
    holderOf: (key) => holders.get(key)?.id ?? null,
    waiting: (key) => queues.get(key)?.length ?? 0,
    hold: () => void (holding = true),
    release: () => {
      holding = false;
      for (const go of held.splice(0)) go();
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
