/**
 * Listener adapter for `Bun.listen`: Bun's callback sockets turned into web
 * streams, with partial writes finished on `drain` and reads paused while
 * the reader is behind.
 *
 * @module
 */

import type { ServerConnection } from "./connection.ts";
import type { Listen } from "./listener.ts";

/** The part of a Bun TCP socket this adapter uses. */
interface BunSocket {
  data: SocketState;
  readonly remoteAddress: string;
  readonly remotePort?: number;
  write(data: Uint8Array): number;
  end(): void;
  terminate(): void;
  pause(): void;
  resume(): void;
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

interface SocketState {
  controller: ReadableStreamDefaultController<Uint8Array> | null;
  /** Bytes of the current write that the socket has not taken yet. */
  unsent: Uint8Array | null;
  written: { resolve(): void; reject(error: Error): void } | null;
  closed: boolean;
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
        socket.data = { controller: null, unsent: null, written: null, closed: false };
        onConnection(bunConnection(socket));
      },
      data(socket, chunk) {
        const controller = socket.data.controller;
        if (controller === null) return;
        controller.enqueue(new Uint8Array(chunk));
        if ((controller.desiredSize ?? 1) <= 0) socket.pause();
      },
      drain(socket) {
        const state = socket.data;
        if (state.unsent === null) return;
        const n = socket.write(state.unsent);
        if (n < 0) return fail(state, new Error("socket closed"));
        state.unsent = n < state.unsent.length ? state.unsent.subarray(n) : null;
        if (state.unsent === null) {
          const written = state.written;
          state.written = null;
          written?.resolve();
        }
      },
      end(socket) {
        endReadable(socket.data);
      },
      close(socket) {
        socket.data.closed = true;
        endReadable(socket.data);
        fail(socket.data, new Error("socket closed"));
      },
      error(socket, error) {
        fail(socket.data, error);
      },
    },
  });
  return Promise.resolve({
    hostname: server.hostname,
    port: server.port,
    close: () => Promise.resolve(server.stop(false)),
  });
};

function endReadable(state: SocketState): void {
  try {
    state.controller?.close();
  } catch {
    // Already closed.
  }
  state.controller = null;
}

function fail(state: SocketState, error: Error): void {
  const written = state.written;
  state.written = null;
  state.unsent = null;
  written?.reject(error);
}

function bunConnection(socket: BunSocket): ServerConnection {
  const state = socket.data;
  socket.setNoDelay(true);
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      state.controller = controller;
    },
    pull() {
      socket.resume();
    },
    cancel() {
      state.controller = null;
      socket.terminate();
    },
  }, { highWaterMark: 8 });
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      if (state.closed) return Promise.reject(new Error("socket closed"));
      const n = socket.write(chunk);
      if (n === chunk.length) return;
      if (n < 0) return Promise.reject(new Error("socket closed"));
      state.unsent = chunk.subarray(n);
      return new Promise<void>((resolve, reject) => state.written = { resolve, reject });
    },
    close() {
      socket.end();
    },
    abort() {
      socket.terminate();
    },
  });
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
