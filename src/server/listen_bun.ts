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
  const { streams } = state;
  let made: ReturnType<typeof bunSocketStreams> | null = null;
  const raw: RawServerSocket = {
    start(onData, onEnd) {
      state.onData = onData;
      state.onEnd = onEnd;
      if (streams.closed) onEnd();
    },
    write(bytes) {
      if (streams.closed) throw new Error("socket closed");
      const n = socket.write(bytes);
      if (n === bytes.length) return true;
      if (n < 0) throw new Error("socket closed");
      // The rest goes on `drain` (bunSocketEvents.drain), which settles `written`.
      streams.unsent = bytes.subarray(n);
      return false;
    },
    drained: () =>
      streams.unsent === null
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => streams.written = { resolve, reject }),
    pause: () => socket.pause(),
    resume: () => socket.resume(),
  };
  return {
    get readable() {
      return (made ??= bunSocketStreams(socket, streams)).readable;
    },
    get writable() {
      return (made ??= bunSocketStreams(socket, streams)).writable;
    },
    raw,
    remoteAddress: typeof socket.remotePort === "number"
      ? `${socket.remoteAddress}:${socket.remotePort}`
      : socket.remoteAddress,
    close: () => socket.end(),
    abort: () => socket.terminate(),
  };
}
