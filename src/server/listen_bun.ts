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
  data: BunStreamState;
  readonly remoteAddress: string;
  readonly remotePort?: number;
  setNoDelay(noDelay: boolean): void;
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

/** Listens with `Bun.listen`. */
export const listenBun: Listen = (options, onConnection) => {
  const bun = (globalThis as unknown as { Bun: BunNamespace }).Bun;
  const server = bun.listen({
    hostname: options.hostname,
    port: options.port,
    allowHalfOpen: true,
    socket: {
      open(socket) {
        socket.data = newBunStreamState();
        onConnection(bunConnection(socket));
      },
      data: (socket, chunk) => bunSocketEvents.data(socket.data, socket, chunk),
      drain: (socket) => bunSocketEvents.drain(socket.data, socket),
      end: (socket) => bunSocketEvents.end(socket.data),
      close: (socket) => bunSocketEvents.close(socket.data),
      error: (socket, error) => bunSocketEvents.error(socket.data, error),
    },
  });
  return Promise.resolve({
    hostname: server.hostname,
    port: server.port,
    close: () => Promise.resolve(server.stop(false)),
  });
};

function bunConnection(socket: BunSocket): ServerConnection {
  socket.setNoDelay(true);
  return {
    ...bunSocketStreams(socket, socket.data),
    remoteAddress: typeof socket.remotePort === "number"
      ? `${socket.remoteAddress}:${socket.remotePort}`
      : socket.remoteAddress,
    close: () => socket.end(),
    abort: () => socket.terminate(),
  };
}
