/**
 * Listener adapter for Node's `net`, or `tls` for a TLS server (also used
 * wherever `node:net` exists but neither Deno nor Bun does).
 *
 * @module
 */

import { createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { nodeSocketStreams, socketDrained } from "../transport/node_streams.ts";
import type { RawServerSocket, ServerConnection } from "./connection.ts";
import type { Listen, Listener } from "./listener.ts";

/** Listens with `node:net`, or `node:tls` when `options.tls` is given. */
export const listenNode: Listen = (options, onConnection) =>
  new Promise<Listener>((resolve, reject) => {
    const keepAlive = options.keepAlive ?? 0;
    const accept = (socket: Socket) => {
      if (keepAlive > 0) socket.setKeepAlive(true, keepAlive);
      onConnection(nodeConnection(socket));
    };
    let server: Server;
    if (options.tls === undefined) {
      server = createServer({ noDelay: true, allowHalfOpen: true }, accept);
    } else {
      const { cert, key } = options.tls;
      server = createTlsServer({ cert, key, allowHalfOpen: true }, accept)
        // A client that fails the handshake is dropped; nothing to serve.
        .on("tlsClientError", () => {});
    }
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

/** A server connection over a Node socket: its callbacks, and web streams made if asked for. */
export function nodeConnection(socket: Socket): ServerConnection {
  socket.setNoDelay(true);
  let streams: ReturnType<typeof nodeSocketStreams> | null = null;
  const raw: RawServerSocket = {
    start(onData, onEnd) {
      socket.on("error", () => {
        // "close" follows.
      });
      socket.on("data", onData);
      socket.on("end", onEnd);
      socket.on("close", onEnd);
    },
    write(bytes) {
      if (socket.destroyed || !socket.writable) throw new Error("socket closed");
      return socket.write(bytes);
    },
    drained: () => socketDrained(socket),
    pause: () => void socket.pause(),
    resume: () => void socket.resume(),
  };
  return {
    get readable() {
      return (streams ??= nodeSocketStreams(socket)).readable;
    },
    get writable() {
      return (streams ??= nodeSocketStreams(socket)).writable;
    },
    raw,
    remoteAddress: `${socket.remoteAddress}:${socket.remotePort}`,
    close: () => void socket.end(),
    abort: () => void socket.destroy(),
  };
}
