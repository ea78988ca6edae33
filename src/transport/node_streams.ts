/**
 * Web streams over a Node `net.Socket`, with backpressure both ways: reads
 * pause while the reader is behind, writes wait for `drain`. Shared by the
 * client's Node transport and the bundled server's Node listener.
 *
 * @module
 */

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
 * The socket's bytes as web streams. The readable ends when the socket ends
 * or closes (also after an error); a write rejects once the socket is gone.
 *
 * @param socket a connected socket
 * @returns the two streams
 *
 * @example
 * ```ts ignore
 * const { readable, writable } = nodeSocketStreams(net.connect({ port: 11400 }));
 * ```
 */
export function nodeSocketStreams(
  socket: NodeSocketLike,
): { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> } {
  socket.on("error", () => {
    // "close" follows; the streams report the end.
  });
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      const end = () => {
        try {
          controller.close();
        } catch {
          // Already closed.
        }
      };
      socket.on("data", (chunk: Uint8Array) => {
        controller.enqueue(chunk);
        if ((controller.desiredSize ?? 1) <= 0) socket.pause();
      });
      socket.on("end", end);
      socket.on("close", end);
    },
    pull() {
      socket.resume();
    },
    cancel() {
      socket.destroy();
    },
  }, { highWaterMark: 8 });
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      if (socket.destroyed || !socket.writable) return Promise.reject(new Error("socket closed"));
      if (socket.write(chunk)) return;
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
    },
    close() {
      socket.end();
    },
    abort() {
      socket.destroy();
    },
  });
  return { readable, writable };
}
