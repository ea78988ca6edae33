/**
 * Listener adapter for `Deno.listen`: each connection read with
 * `conn.read` into a buffer of its own that is reused from read to read,
 * and written with `conn.write`, without web streams (TLS goes through
 * `node:tls`, see listen_node.ts).
 *
 * @module
 */

import type { RawServerSocket, ServerConnection } from "./connection.ts";
import type { Listen } from "./listener.ts";

/** The part of a `Deno.TcpConn` this adapter uses. */
interface DenoConn {
  readonly remoteAddr: { readonly hostname: string; readonly port: number };
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
  setNoDelay(noDelay?: boolean): void;
  setKeepAlive(keepAlive?: boolean): void;
}

interface DenoListener extends AsyncIterable<DenoConn> {
  readonly addr: { readonly hostname: string; readonly port: number };
  close(): void;
}

interface DenoNamespace {
  listen(options: { hostname: string; port: number; transport: "tcp" }): DenoListener;
}

/** First read buffer of a connection; it doubles, up to {@linkcode MAX_READ}, whenever a read fills it. */
const FIRST_READ = 256;
const MAX_READ = 64 << 10;
/** Bytes queued behind a write in flight before `write` says "wait for drained". */
const HIGH_WATER = 64 << 10;

/** Listens with `Deno.listen` (plain TCP; with `options.tls` it uses `node:tls`). */
export const listenDeno: Listen = async (options, onConnection) => {
  if (options.tls !== undefined) {
    return await (await import("./listen_node.ts")).listenNode(options, onConnection);
  }
  const deno = (globalThis as unknown as { Deno: DenoNamespace }).Deno;
  const listener = deno.listen({
    hostname: options.hostname,
    port: options.port,
    transport: "tcp",
  });
  const keepAlive = (options.keepAlive ?? 0) > 0;
  void (async () => {
    try {
      for await (const conn of listener) {
        try {
          conn.setNoDelay(true);
          if (keepAlive) conn.setKeepAlive(true);
        } catch {
          // A connection reset before it was set up: its first read ends it.
        }
        onConnection(denoConnection(conn));
      }
    } catch {
      // The listener was closed.
    }
  })();
  return {
    hostname: listener.addr.hostname,
    port: listener.addr.port,
    close: () => {
      try {
        listener.close();
      } catch {
        // Already closed.
      }
      return Promise.resolve();
    },
  };
};

/** One connection's state; the methods are shared (no closures per connection). */
class DenoSocket implements RawServerSocket {
  readonly conn: DenoConn;
  closed = false;
  #onData: ((chunk: Uint8Array) => void) | null = null;
  #onEnd: (() => void) | null = null;
  #paused = false;
  #reading = false;
  /** A chunk read while paused, handed over on resume. */
  #held: Uint8Array | null = null;
  /** Bytes waiting behind the write in flight. */
  #queue: Uint8Array[] = [];
  #queued = 0;
  #writing = false;
  #drained: { resolve: () => void; reject: (e: Error) => void } | null = null;
  /** The peer has ended (or the socket broke). */
  #eof = false;
  /** `end` or `abort` was called. */
  #writeClosed = false;
  /** The resource was closed. */
  #released = false;

  constructor(conn: DenoConn) {
    this.conn = conn;
  }

  start(onData: (chunk: Uint8Array) => void, onEnd: () => void): void {
    this.#onData = onData;
    this.#onEnd = onEnd;
    void this.#readLoop();
  }

  async #readLoop(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    let buffer = new Uint8Array(FIRST_READ);
    let eof = false;
    let broken = false;
    try {
      while (!this.#paused && !this.closed) {
        const n = await this.conn.read(buffer);
        if (n === null) {
          eof = true;
          break;
        }
        const chunk = buffer.subarray(0, n);
        if (this.#paused) {
          // Handed over on resume; the next read goes into a new buffer.
          this.#held = chunk;
          break;
        }
        this.#onData!(chunk);
        if (n === buffer.length && buffer.length < MAX_READ) buffer = new Uint8Array(n * 2);
      }
    } catch {
      // A reset, or the connection was closed here.
      broken = true;
    }
    this.#reading = false;
    if (!eof && !broken && this.#paused && !this.closed) return;
    this.#eof = true;
    if (broken) this.#fail();
    // Both directions are done once the write side was closed too.
    else if (this.#writeClosed) this.#close();
    this.#ended();
  }

  #ended(): void {
    const onEnd = this.#onEnd;
    this.#onEnd = null;
    onEnd?.();
  }

  /** The socket broke or was aborted: nothing more is written. */
  #fail(): void {
    this.closed = true;
    this.#close();
    this.#queue = [];
    this.#queued = 0;
    const drained = this.#drained;
    this.#drained = null;
    drained?.reject(new Error("socket closed"));
  }

  write(bytes: Uint8Array): boolean {
    if (this.closed || this.#writeClosed) throw new Error("socket closed");
    if (this.#writing) {
      this.#queue.push(bytes);
      this.#queued += bytes.length;
      return this.#queued < HIGH_WATER;
    }
    void this.#writeLoop(bytes);
    return true;
  }

  async #writeLoop(first: Uint8Array): Promise<void> {
    this.#writing = true;
    let bytes: Uint8Array | undefined = first;
    try {
      while (bytes !== undefined) {
        let at = 0;
        while (at < bytes.length) {
          at += await this.conn.write(at === 0 ? bytes : bytes.subarray(at));
        }
        if (this.#queue.length === 0) break;
        bytes = this.#queue.length === 1 ? this.#queue[0] : concatAll(this.#queue, this.#queued);
        this.#queue = [];
        this.#queued = 0;
      }
    } catch {
      this.#writing = false;
      this.abort();
      return;
    }
    if (this.closed) return;
    this.#writing = false;
    const drained = this.#drained;
    this.#drained = null;
    drained?.resolve();
  }

  drained(): Promise<void> {
    if (!this.#writing) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error("socket closed"));
    return new Promise<void>((resolve, reject) => this.#drained = { resolve, reject });
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    const held = this.#held;
    this.#held = null;
    if (held !== null && !this.closed) this.#onData!(held);
    if (!this.#paused && !this.closed) void this.#readLoop();
  }

  /** Half-closes once what was written has gone; closes once the peer has ended too. */
  async end(): Promise<void> {
    if (this.#writeClosed) return;
    this.#writeClosed = true;
    try {
      await this.drained();
      if (!this.#eof) await this.conn.closeWrite();
    } catch {
      // Already closed.
    }
    if (this.#eof) this.#close();
  }

  /** Closes the socket at once. */
  abort(): void {
    this.#writeClosed = true;
    this.#fail();
    // A pending read fails and ends the connection; one not reading is ended here.
    if (!this.#reading) this.#ended();
  }

  #close(): void {
    if (this.#released) return;
    this.#released = true;
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

function concatAll(parts: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function denoConnection(conn: DenoConn): ServerConnection {
  const socket = new DenoSocket(conn);
  return new DenoServerConnection(socket);
}

class DenoServerConnection implements ServerConnection {
  readonly raw: DenoSocket;
  readonly remoteAddress: string;
  constructor(socket: DenoSocket) {
    this.raw = socket;
    const { hostname, port } = socket.conn.remoteAddr;
    this.remoteAddress = `${hostname}:${port}`;
  }
  get readable(): ReadableStream<Uint8Array> {
    throw new Error("listen_deno connections are read through `raw`");
  }
  get writable(): WritableStream<Uint8Array> {
    throw new Error("listen_deno connections are written through `raw`");
  }
  close(): void {
    void this.raw.end();
  }
  abort(): void {
    this.raw.abort();
  }
}
