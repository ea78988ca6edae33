/**
 * Listener adapter for `Bun.listen`: Bun's callback sockets turned into web
 * streams, with partial writes finished on `drain` and reads paused while
 * the reader is behind.
 *
 * @module
 */

import {
  bunSocketEvents,
  type BunSocketLike,
  bunSocketStreams,
  type BunStreamState,
  newBunStreamState,
} from "../transport/bun_streams.ts";
import type { RawServerSocket, ServerConnection } from "./connection.ts";
import type { Listen } from "./listener.ts";

/** The part of a Bun TCP socket this adapter uses. */
interface BunSocket extends BunSocketLike {
  data: BunConnectionState | undefined;
  readonly remoteAddress: string;
  readonly remotePort?: number;
  setNoDelay(noDelay: boolean): void;
  /** SO_KEEPALIVE, with TCP_KEEPIDLE of `initialDelay` ms (Bun's `TCPSocket.setKeepAlive`). */
  setKeepAlive?(enable: boolean, initialDelay: number): boolean;
}

/** What a socket's callbacks reach: the streams' state, or the handler's callbacks. */
interface BunConnectionState {
  readonly streams: BunStreamState;
  onData: ((chunk: Uint8Array) => void) | null;
  onEnd: (() => void) | null;
}

interface BunServer {
  readonly hostname: string;
  readonly port: number;
  stop(closeActiveConnections?: boolean): void;
}

interface BunNamespace {
  listen(options: {
    hostname: string;
    port: number;
    allowHalfOpen?: boolean;
    tls?: { cert: string; key: string };
    socket: {
      open(socket: BunSocket): void;
      data(socket: BunSocket, chunk: Uint8Array): void;
      drain(socket: BunSocket): void;
      end(socket: BunSocket): void;
      close(socket: BunSocket): void;
      error(socket: BunSocket, error: Error): void;
    };
  }): BunServer;
}

/** Listens with `Bun.listen` (with its `tls` settings when `options.tls` is given). */
export const listenBun: Listen = (options, onConnection) => {
  const bun = (globalThis as unknown as { Bun: BunNamespace }).Bun;
  const keepAlive = options.keepAlive ?? 0;
  const server = bun.listen({
    hostname: options.hostname,
    port: options.port,
    allowHalfOpen: true,
    ...(options.tls === undefined ? {} : { tls: { cert: options.tls.cert, key: options.tls.key } }),
    socket: {
      open(socket) {
        if (keepAlive > 0) socket.setKeepAlive?.(true, keepAlive);
        const state: BunConnectionState = {
          streams: newBunStreamState(),
          onData: null,
          onEnd: null,
        };
        socket.data = state;
        onConnection(bunConnection(socket, state));
      },
      // Before `open` (a TLS handshake that failed) a socket has no state yet.
      data(socket, chunk) {
        const state = socket.data;
        if (state === undefined) return;
        if (state.onData !== null) state.onData(chunk);
        else bunSocketEvents.data(state.streams, socket, chunk);
      },
      drain: (socket) => socket.data && bunSocketEvents.drain(socket.data.streams, socket),
      end(socket) {
        const state = socket.data;
        if (state === undefined) return;
        state.onEnd?.();
        bunSocketEvents.end(state.streams);
      },
      close(socket) {
        const state = socket.data;
        if (state === undefined) return;
        state.onEnd?.();
        bunSocketEvents.close(state.streams);
      },
      error: (socket, error) => socket.data && bunSocketEvents.error(socket.data.streams, error),
    },
  });
  return Promise.resolve({
    hostname: server.hostname,
    port: server.port,
    close: () => Promise.resolve(server.stop(false)),
  });
};

function bunConnection(socket: BunSocket, state: BunConnectionState): ServerConnection {
  socket.setNoDelay(true);
  return new BunServerConnection(socket, state);
}

/** One connection, its socket's callbacks and the handler's side; methods shared, no closures per connection. */
class BunServerConnection implements ServerConnection, RawServerSocket {
  readonly #socket: BunSocket;
  readonly #state: BunConnectionState;
  #made: ReturnType<typeof bunSocketStreams> | null = null;

  constructor(socket: BunSocket, state: BunConnectionState) {
    this.#socket = socket;
    this.#state = state;
    this.remoteAddress = typeof socket.remotePort === "number"
      ? `${socket.remoteAddress}:${socket.remotePort}`
      : socket.remoteAddress;
  }

  get raw(): RawServerSocket {
    return this;
  }

  readonly remoteAddress: string;

  get readable(): ReadableStream<Uint8Array> {
    return (this.#made ??= bunSocketStreams(this.#socket, this.#state.streams)).readable;
  }

  get writable(): WritableStream<Uint8Array> {
    return (this.#made ??= bunSocketStreams(this.#socket, this.#state.streams)).writable;
  }

  start(onData: (chunk: Uint8Array) => void, onEnd: () => void): void {
    this.#state.onData = onData;
    this.#state.onEnd = onEnd;
    if (this.#state.streams.closed) onEnd();
  }

  write(bytes: Uint8Array): boolean {
    const streams = this.#state.streams;
    if (streams.closed) throw new Error("socket closed");
    const n = this.#socket.write(bytes);
    if (n === bytes.length) return true;
    if (n < 0) throw new Error("socket closed");
    // The rest goes on `drain` (bunSocketEvents.drain), which settles `written`.
    streams.unsent = bytes.subarray(n);
    return false;
  }

  drained(): Promise<void> {
    const streams = this.#state.streams;
    return streams.unsent === null
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => streams.written = { resolve, reject });
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  close(): void {
    this.#socket.end();
  }

  abort(): void {
    this.#socket.terminate();
  }
}
