/**
 * Listener adapter for Node's `net` (also used wherever `node:net` exists
 * but neither Deno nor Bun does).
 *
 * @module
 */

import { createServer, type Socket } from "node:net";
import type { ServerConnection } from "./connection.ts";
import type { Listen, Listener } from "./listener.ts";

/** Listens with `node:net`. */
export const listenNode: Listen = (options, onConnection) =>
  new Promise<Listener>((resolve, reject) => {
    const server = createServer(
      { noDelay: true, allowHalfOpen: true },
      (socket) => onConnection(nodeConnection(socket)),
    );
    server.once("error", reject);
    server.listen({ port: options.port, host: options.hostname }, () => {
      server.off("error", reject);
      const address = server.address();
      if (address === null || typeof address === "string") {
        reject(new Error("listener has no TCP address"));
        return;
      }
      resolve({
        hostname: address.address,
        port: address.port,
        // Node calls server.close()'s callback only once every connection
        // has ended; the server aborts them itself, so don't wait for that.
        close: () => {
          server.close();
          return Promise.resolve();
        },
      });
    });
  });

/** Web streams over a Node socket, with backpressure in both directions. */
export function nodeConnection(socket: Socket): ServerConnection {
  socket.setNoDelay(true);
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
  return {
    readable,
    writable,
    remoteAddress: `${socket.remoteAddress}:${socket.remotePort}`,
    close: () => void socket.end(),
    abort: () => void socket.destroy(),
  };
}
