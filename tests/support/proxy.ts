/**
 * A real TCP proxy in front of a real server, for fault injection. On command
 * from the test it records what clients send, drops, resets or stalls
 * connections, cuts one in the middle of a reply line, delays each
 * direction, or stops forwarding replies (a server that went silent).
 *
 * Faults apply to every open connection, or to the one at `index` (the order
 * in which the proxy accepted them). Runs on Node, Deno and Bun through
 * `node:net`.
 *
 * @module
 */

import net from "node:net";

/** A proxy listening on 127.0.0.1. */
export interface Proxy {
  /** The proxy's port: connect clients here. */
  readonly port: number;
  /** Everything clients sent, per connection, as text. */
  readonly sent: string[];
  /** Number of client connections accepted so far. */
  readonly accepted: number;
  /** Number of connections open now. */
  readonly open: number;
  /** The indexes of the connections open now. */
  readonly openIndexes: number[];
  /** Stops forwarding the server's replies (they are dropped), on every connection from now on. */
  silence(): void;
  /** Destroys connections, both sides (a network that dropped). */
  cut(index?: number): void;
  /** Ends connections cleanly, both sides (FIN). */
  drop(index?: number): void;
  /** Resets connections, both sides (RST). */
  reset(index?: number): void;
  /**
   * Holds every byte in both directions until {@linkcode Proxy.unstall}
   * (nothing is lost: a network that froze).
   */
  stall(index?: number): void;
  /**
   * A half-dead link: closes the server's side (the server sees the
   * connection end and starts the session's release timeout) while the
   * client's side stays open and silent: what the client sends is dropped,
   * nothing reaches it, and no FIN or RST is ever sent to it.
   */
  halfDead(index?: number): void;
  /** Forwards what a stall held, and carries on. */
  unstall(index?: number): void;
  /**
   * Forwards the first half of the next line the server sends, then
   * destroys the connection: a reply cut in the middle.
   */
  cutMidReply(index?: number): void;
  /** Delays each chunk by this many ms, per direction, on new and open connections. */
  delay(ms: { toServer?: number; toClient?: number }): void;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface Link {
  readonly index: number;
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  stalled: boolean;
  held: { to: net.Socket; chunk: Uint8Array }[];
  cutMidReply: boolean;
  halfDead: boolean;
  readonly toServer: Lane;
  readonly toClient: Lane;
}

/** Starts a proxy to `127.0.0.1:targetPort`. */
export async function startProxy(targetPort: number): Promise<Proxy> {
  const links = new Set<Link>();
  const sent: string[] = [];
  let silent = false;
  let accepted = 0;
  const delays = { toServer: 0, toClient: 0 };
  const forward = (link: Link, to: net.Socket, chunk: Uint8Array) => {
    if (link.stalled) link.held.push({ to, chunk });
    else if (!to.destroyed && !link.halfDead) to.write(chunk);
  };
  const server = net.createServer((client) => {
    const index = accepted++;
    sent[index] = "";
    const upstream = net.connect({ host: "127.0.0.1", port: targetPort });
    const link: Link = {
      index,
      client,
      upstream,
      stalled: false,
      held: [],
      cutMidReply: false,
      halfDead: false,
      toServer: new Lane(),
      toClient: new Lane(),
    };
    links.add(link);
    for (const socket of [client, upstream]) {
      socket.on("error", () => {});
      socket.on("close", () => {
        if (link.halfDead && socket === upstream) return;
        links.delete(link);
        client.destroy();
        upstream.destroy();
      });
      socket.on("end", () => {
        if (link.halfDead) return;
        client.end();
        upstream.end();
      });
    }
    client.on("data", (chunk: Uint8Array) => {
      sent[index] += new TextDecoder().decode(chunk);
      link.toServer.later(delays.toServer, () => forward(link, upstream, chunk));
    });
    upstream.on("data", (chunk: Uint8Array) => {
      if (silent) return;
      if (link.cutMidReply) {
        const end = chunk.indexOf(10);
        const half = Math.max(1, Math.floor((end < 0 ? chunk.length : end) / 2));
        client.write(chunk.subarray(0, half), () => {
          client.destroy();
          upstream.destroy();
        });
        link.cutMidReply = false;
        return;
      }
      link.toClient.later(delays.toClient, () => forward(link, client, chunk));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const each = (index: number | undefined, fn: (link: Link) => void) => {
    for (const link of [...links]) if (index === undefined || link.index === index) fn(link);
  };
  const cut = (index?: number) =>
    each(index, (link) => {
      link.client.destroy();
      link.upstream.destroy();
    });
  const close = async () => {
    cut();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return {
    port,
    sent,
    get accepted() {
      return accepted;
    },
    get open() {
      return links.size;
    },
    get openIndexes() {
      return [...links].map((link) => link.index);
    },
    silence: () => void (silent = true),
    cut,
    drop: (index) =>
      each(index, (link) => {
        link.client.end();
        link.upstream.end();
      }),
    reset: (index) =>
      each(index, (link) => {
        link.client.resetAndDestroy();
        link.upstream.resetAndDestroy();
      }),
    halfDead: (index) =>
      each(index, (link) => {
        link.halfDead = true;
        link.held = [];
        link.upstream.destroy();
      }),
    stall: (index) => each(index, (link) => void (link.stalled = true)),
    unstall: (index) =>
      each(index, (link) => {
        link.stalled = false;
        for (const { to, chunk } of link.held.splice(0)) if (!to.destroyed) to.write(chunk);
      }),
    cutMidReply: (index) => each(index, (link) => void (link.cutMidReply = true)),
    delay: (ms) => {
      delays.toServer = ms.toServer ?? delays.toServer;
      delays.toClient = ms.toClient ?? delays.toClient;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * One direction of a link: each chunk is forwarded `ms` after it came, but
 * never before a chunk that came earlier (TCP does not reorder a stream,
 * also not when the delay changes between two chunks).
 */
class Lane {
  readonly #queue: { at: number; fn: () => void }[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  later(ms: number, fn: () => void): void {
    if (ms <= 0 && this.#queue.length === 0) {
      fn();
      return;
    }
    this.#queue.push({ at: Date.now() + ms, fn });
    this.#arm();
  }

  #arm(): void {
    if (this.#timer !== undefined) return;
    const head = this.#queue[0];
    if (head === undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // In order: the head first, and whatever behind it is due by now.
      while (this.#queue.length > 0) {
        const next = this.#queue[0]!;
        if (next !== head && next.at > Date.now()) break;
        this.#queue.shift();
        next.fn();
      }
      this.#arm();
    }, Math.max(0, head.at - Date.now()));
  }
}

/** A scripted server, listening on 127.0.0.1. */
export interface ScriptedServer {
  readonly port: number;
  /** Number of connections open now. */
  readonly connections: number;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A scripted server: answers each received line with `answer(line, write,
 * close)`, where `close` ends that connection.
 */
export async function startScriptedServer(
  answer: (line: string, write: (text: string) => void, close: () => void) => void,
): Promise<ScriptedServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    let buffered = "";
    socket.on("data", (chunk: Uint8Array) => {
      buffered += new TextDecoder().decode(chunk);
      let end: number;
      while ((end = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        answer(line, (text) => socket.write(text), () => socket.end());
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const close = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return {
    port,
    get connections() {
      return sockets.size;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
