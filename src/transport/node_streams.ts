/**
 * Web streams over a Node `net.Socket`, with backpressure both ways: reads
 * pause while the reader is behind, writes wait for `drain`. Shared by the
 * client's Node transport and the bundled server's Node listener.
 *
 * @module
 */

import { _closeGracefully, type RawSink, type RawSocket } from "./transport.ts";

/** The part of a Node `net.Socket` these streams use. */
export interface NodeSocketLike {
  readonly destroyed: boolean;
  readonly writable: boolean;
  on(event: "data", listener: (chunk: Uint8Array) => void): unknown;
  on(event: "end" | "close" | "drain", listener: () => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
  off(event: "close" | "drain", listener: () => void): unknown;
  pause(): unknown;
  resume(): unknown;
  write(chunk: Uint8Array): boolean;
  end(): unknown;
  destroy(): unknown;
}

/**
 * The socket's bytes as web streams, and a graceful `close`. The readable
 * ends when the socket ends or closes (also after an error); a write rejects
 * once the socket is gone. Closing the writable half-closes the socket
 * (`end()`). Cancelling the readable, aborting the writable and `close()`
 * all close the socket gracefully: `end()`, what still arrives is read and
 * dropped (unread bytes would make the kernel reset the connection), and
 * only if the peer has not closed its side within a bounded wait is the
 * socket destroyed.
 *
 * @param socket a connected socket
 * @returns the two streams, and `close`, resolving once the socket has closed
 *
 * @example
 * ```ts ignore
 * const { readable, writable, close } = nodeSocketStreams(net.connect({ port: 11400 }));
 * ```
 */
export function nodeSocketStreams(
  socket: NodeSocketLike,
): {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  close(): Promise<void>;
  raw: RawSocket;
} {
  socket.on("error", () => {
    // "close" follows; the streams report the end.
  });
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  let deliver: ReadableStreamDefaultController<Uint8Array> | null = null;
  const endReadable = () => {
    const controller = deliver;
    deliver = null;
    try {
      controller?.close();
    } catch {
      // Already closed or cancelled.
    }
  };
  /** Set by `raw.start()`: bytes go there instead of to the readable. */
  let sink: RawSink | null = null;
  let rawMode = false;
  const endSink = () => {
    const s = sink;
    sink = null;
    s?.end();
  };
  let closing: Promise<void> | null = null;
  const close = () =>
    closing ??= (() => {
      // From now on what arrives is dropped, and read so that it is.
      sink = null;
      endReadable();
      socket.resume();
      return _closeGracefully(() => socket.end(), () => socket.destroy(), closed);
    })();
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      deliver = controller;
      socket.on("data", (chunk: Uint8Array) => {
        if (rawMode) {
          sink?.data(chunk);
          return;
        }
        if (deliver === null) return;
        deliver.enqueue(chunk);
        if ((deliver.desiredSize ?? 1) <= 0) socket.pause();
      });
      const ended = () => {
        endReadable();
        endSink();
      };
      socket.on("end", ended);
      socket.on("close", ended);
    },
    pull() {
      socket.resume();
    },
    cancel() {
      deliver = null;
      return close();
    },
  }, { highWaterMark: 8 });
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      if (socket.destroyed || !socket.writable) return Promise.reject(new Error("socket closed"));
      if (socket.write(chunk)) return;
      return socketDrained(socket);
    },
    close() {
      socket.end();
    },
    abort() {
      return close();
    },
  });
  const drained = () =>
    socket.destroyed || !socket.writable
      ? Promise.reject(new Error("socket closed"))
      : socketDrained(socket);
  const raw: RawSocket = {
    start(to) {
      rawMode = true;
      sink = closing === null ? to : null;
      deliver = null;
      if (closing === null && socket.destroyed) endSink();
      socket.resume();
    },
    write(chunk) {
      if (socket.destroyed || !socket.writable) throw new Error("socket closed");
      return socket.write(chunk);
    },
    drained,
  };
  return { readable, writable, close, raw };
}

/**
 * Resolves on the socket's next `drain`; rejects if it closes first.
 *
 * @param socket the socket whose buffer is full
 * @returns the wait
 *
 * @example
 * ```ts ignore
 * if (!socket.write(bytes)) await socketDrained(socket);
 * ```
 */
export function socketDrained(
  socket: Pick<NodeSocketLike, "on" | "off">,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (error?: Error) => {
      socket.off("drain", onDrain);
      socket.off("close", onClose);
      error ? reject(error) : resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(new Error("socket closed"));
    socket.on("drain", onDrain);
    socket.on("close", onClose);
  });
}
