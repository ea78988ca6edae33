/**
 * Transport over Node's `net` module (also works on Deno and Bun through
 * their Node compatibility). `node:net` is loaded when the first connection
 * is made, not when this module is.
 *
 * @module
 */

import { type NodeSocketLike, nodeSocketStreams } from "./node_streams.ts";
import { _raceAbort, type Transport, type TransportConnection } from "./transport.ts";

/** The part of a Node `net.Socket` this adapter uses. */
interface Socket extends NodeSocketLike {
  once(event: "close" | "connect", listener: () => void): unknown;
  once(event: "error", listener: (error: Error) => void): unknown;
  off(event: "close" | "drain", listener: () => void): unknown;
  off(event: "error", listener: (error: Error) => void): unknown;
}

interface NodeNet {
  connect(options: { host: string; port: number; noDelay: boolean }): Socket;
}

/** `node:net`, named through a variable so no type checker needs Node's types. */
const NODE_NET = "node:net";

/**
 * A {@linkcode Transport} over Node's `net.connect`, with TCP no-delay on.
 *
 * @returns the transport
 *
 * @example
 * ```ts
 * import { ELockClient, nodeTransport } from "@x/elock";
 *
 * const client = await ELockClient.connect({ port: 11400, transport: nodeTransport() });
 * await client.close();
 * ```
 */
export function nodeTransport(): Transport {
  return {
    async connect({ host, port, signal }) {
      const net = (await import(NODE_NET)) as NodeNet;
      const open = () =>
        new Promise<Socket>((resolve, reject) => {
          const socket = net.connect({ host, port, noDelay: true });
          const onError = (error: Error) => reject(error);
          socket.once("error", onError);
          socket.once("connect", () => {
            socket.off("error", onError);
            resolve(socket);
          });
        });
      const socket = await _raceAbort(
        () => open().then((s) => ({ s, close: () => s.destroy() })),
        signal,
      );
      return nodeConnection(socket.s);
    },
  };
}

/** Node's socket as a transport connection. */
function nodeConnection(socket: Socket): TransportConnection {
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  return {
    ...nodeSocketStreams(socket),
    close() {
      socket.destroy();
      return closed;
    },
  };
}
