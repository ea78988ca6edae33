/**
 * Web streams over Bun's callback sockets, with backpressure both ways:
 * reads pause while the reader is behind, a partial write is finished on
 * `drain`. Shared by the client's Bun transport and the bundled server's
 * Bun listener: the socket's callbacks call {@linkcode bunSocketEvents},
 * the streams come from {@linkcode bunSocketStreams}.
 *
 * Bun's `terminate()` resets the connection (`SO_LINGER` 0, then close):
 * the peer reads `ECONNRESET`, which crashes the NodeJS eLock server. And
 * Bun's `end()` sends a FIN but closes the socket at once, so bytes the peer
 * still sends are answered with a reset. These streams half-close with
 * `shutdown()` (a FIN; the read side stays open: what Bun's own `node:net`
 * does for `end()`), and `terminate()` only when the peer has not closed its
 * side within a bounded wait.
 *
 * @module
 */

import { _closeGracefully, type RawSink, type RawSocket } from "./transport.ts";

/** The part of a Bun TCP socket these streams use. */
export interface BunSocketLike {
  write(data: Uint8Array): number;
  end(): void;
  /** Half-closes: a FIN, and the socket stays readable until the peer's. */
  shutdown(): void;
  terminate(): void;
  pause(): void;
  resume(): void;
}

/** What the socket's callbacks and its streams share. */
export interface BunStreamState {
  controller: ReadableStreamDefaultController<Uint8Array> | null;
  /** Bytes of the current write that the socket has not taken yet. */
  unsent: Uint8Array | null;
  written: { resolve(): void; reject(error: Error): void } | null;
  closed: boolean;
  /** Called once the socket has closed. */
  onClosed: () => void;
  /** Read by callbacks (`raw.start()`): bytes go to `sink`, not to the readable. */
  raw?: boolean;
  sink?: RawSink | null;
}

/**
 * A fresh state for one socket.
 *
 * @returns the state, with no stream attached yet
 *
 * @example
 * ```ts ignore
 * socket.data = newBunStreamState();
 * ```
 */
export function newBunStreamState(): BunStreamState {
  return { controller: null, unsent: null, written: null, closed: false, onClosed: () => {} };
}

/**
 * What each Bun socket callback does to the streams.
 *
 * @example
 * ```ts ignore
 * Bun.connect({ hostname, port, socket: { data: (s, chunk) => bunSocketEvents.data(state, s, chunk) } });
 * ```
 */
export const bunSocketEvents = {
  /** Bytes arrived. */
  data(state: BunStreamState, socket: BunSocketLike, chunk: Uint8Array): void {
    if (state.raw) {
      state.sink?.data(chunk);
      return;
    }
    const controller = state.controller;
    if (controller === null) return;
    controller.enqueue(new Uint8Array(chunk));
    if ((controller.desiredSize ?? 1) <= 0) socket.pause();
  },
  /** The socket can take more bytes. */
  drain(state: BunStreamState, socket: BunSocketLike): void {
    if (state.unsent === null) return;
    const n = socket.write(state.unsent);
    if (n < 0) return failWrite(state, new Error("socket closed"));
    state.unsent = n < state.unsent.length ? state.unsent.subarray(n) : null;
    if (state.unsent === null) {
      const written = state.written;
      state.written = null;
      written?.resolve();
    }
  },
  /** The peer ended its side. */
  end(state: BunStreamState): void {
    endReadable(state);
    endSink(state);
  },
  /** The socket closed. */
  close(state: BunStreamState): void {
    state.closed = true;
    endReadable(state);
    endSink(state);
    failWrite(state, new Error("socket closed"));
    state.onClosed();
  },
  /** The socket failed. */
  error(state: BunStreamState, error: Error): void {
    failWrite(state, error);
  },
};

/**
 * The socket's bytes as web streams, and a graceful `close`. Closing the
 * writable half-closes the socket (`shutdown()`). Cancelling the readable,
 * aborting the writable and `close()` all close the socket gracefully:
 * `shutdown()` once the write under way (if any) is done, what still
 * arrives is read and dropped, and only if the peer has not closed its side
 * within a bounded wait, `terminate()`.
 *
 * @param socket the open socket
 * @param state the state its callbacks update
 * @returns the two streams, and `close`, resolving once the socket has closed
 *
 * @example
 * ```ts ignore
 * const { readable, writable, close } = bunSocketStreams(socket, state);
 * ```
 */
export function bunSocketStreams(
  socket: BunSocketLike,
  state: BunStreamState,
): {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  close(): Promise<void>;
  raw: RawSocket;
} {
  const closed = new Promise<void>((resolve) => {
    if (state.closed) return resolve();
    const onClosed = state.onClosed;
    state.onClosed = () => {
      onClosed();
      resolve();
    };
  });
  /** Half-closes once the write under way, if any, has gone. */
  const halfClose = () => {
    const written = state.written;
    if (written === null) return socket.shutdown();
    state.written = {
      resolve() {
        written.resolve();
        socket.shutdown();
      },
      reject: written.reject,
    };
  };
  let closing: Promise<void> | null = null;
  const close = () =>
    closing ??= (() => {
      // From now on what arrives is dropped (no controller), and read so that it is.
      state.sink = null;
      endReadable(state);
      socket.resume();
      return _closeGracefully(halfClose, () => socket.terminate(), closed);
    })();
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      state.controller = controller;
      if (state.closed) endReadable(state);
    },
    pull() {
      socket.resume();
    },
    cancel() {
      state.controller = null;
      return close();
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
      socket.shutdown();
    },
    abort() {
      return close();
    },
  });
  const raw: RawSocket = {
    start(sink) {
      state.raw = true;
      state.sink = closing === null ? sink : null;
      state.controller = null;
      if (state.closed) endSink(state);
      socket.resume();
    },
    write(chunk) {
      if (state.closed) throw new Error("socket closed");
      if (state.unsent !== null) {
        // Behind a partial write: taken on drain, in order.
        const joined = new Uint8Array(state.unsent.length + chunk.length);
        joined.set(state.unsent);
        joined.set(chunk, state.unsent.length);
        state.unsent = joined;
        return false;
      }
      const n = socket.write(chunk);
      if (n === chunk.length) return true;
      if (n < 0) throw new Error("socket closed");
      state.unsent = chunk.subarray(n);
      return false;
    },
    drained() {
      if (state.closed) return Promise.reject(new Error("socket closed"));
      if (state.unsent === null) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        // Another writer may be waiting already (the pump and a farewell): both are told.
        const before = state.written;
        state.written = before === null ? { resolve, reject } : {
          resolve() {
            before.resolve();
            resolve();
          },
          reject(error) {
            before.reject(error);
            reject(error);
          },
        };
      });
    },
  };
  return { readable, writable, close, raw };
}

function endSink(state: BunStreamState): void {
  const sink = state.sink;
  state.sink = null;
  sink?.end();
}

function endReadable(state: BunStreamState): void {
  const controller = state.controller;
  state.controller = null;
  try {
    controller?.close();
  } catch {
    // Already closed.
  }
}

function failWrite(state: BunStreamState, error: Error): void {
  const written = state.written;
  state.written = null;
  state.unsent = null;
  written?.reject(error);
}
