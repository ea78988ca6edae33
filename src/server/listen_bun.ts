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
import type { ServerConnection } from "./connection.ts";
import type { Listen } from "./listener.ts";

/** The part of a Bun TCP socket this adapter uses. */
interface BunSocket extends BunSocketLike {
  data: BunStreamState | undefined;
  readonly remoteAddress: string;
  readonly remotePort?: number;
  setNoDelay(noDelay: boolean): void;
  /** SO_KEEPALIVE, with TCP_KEEPIDLE of `initialDelay` ms (Bun's `TCPSocket.setKeepAlive`). */
  setKeepAlive?(enable: boolean, initialDelay: number): boolean;
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
        const state = newBunStreamState();
        socket.data = state;
        onConnection(bunConnection(socket, state));
      },
      // Before `open` (a TLS handshake that failed) a socket has no state yet.
      data: (socket, chunk) => socket.data && bunSocketEvents.data(socket.data, socket, chunk),
      drain: (socket) => socket.data && bunSocketEvents.drain(socket.data, socket),
      end: (socket) => socket.data && bunSocketEvents.end(socket.data),
      close: (socket) => socket.data && bunSocketEvents.close(socket.data),
      error: (socket, error) => socket.data && bunSocketEvents.error(socket.data, error),
    },
  });
  return Promise.resolve({
    hostname: server.hostname,
    port: server.port,
    close: () => Promise.resolve(server.stop(false)),
  });
};

function bunConnection(socket: BunSocket, state: BunStreamState): ServerConnection {
  socket.setNoDelay(true);
  const { readable, writable } = bunSocketStreams(socket, state);
  return {
    readable,
    writable,
    remoteAddress: typeof socket.remotePort === "number"
      ? `${socket.remoteAddress}:${socket.remotePort}`
      : socket.remoteAddress,
    close: () => socket.end(),
    abort: () => socket.terminate(),
  };
}
