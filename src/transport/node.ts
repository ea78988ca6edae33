/**
 * Transport over Node's `net` module, or `tls` for TLS connections (also
 * works on Deno and Bun through their Node compatibility). `node:net` and
 * `node:tls` are loaded when the first connection is made, not when this
 * module is.
 *
 * @module
 */

import { type NodeSocketLike, nodeSocketStreams } from "./node_streams.ts";
import {
  _raceAbort,
  type TlsOptions,
  type Transport,
  type TransportConnection,
} from "./transport.ts";

/** The part of a Node `net.Socket` this adapter uses. */
interface Socket extends NodeSocketLike {
  once(event: "close" | "connect" | "secureConnect", listener: () => void): unknown;
  once(event: "error", listener: (error: Error) => void): unknown;
  off(event: "close" | "drain", listener: () => void): unknown;
  off(event: "error", listener: (error: Error) => void): unknown;
}

interface NodeNet {
  connect(options: { host: string; port: number; noDelay: boolean }): Socket;
}

interface TlsSocket extends Socket {
  setNoDelay(noDelay: boolean): unknown;
}

interface NodeTls {
  /** The roots Node trusts by default (Mozilla's), as PEM. */
  readonly rootCertificates: readonly string[];
  connect(options: {
    host: string;
    port: number;
    servername?: string;
    ca?: string[];
  }): TlsSocket;
}

/** `node:net`, named through a variable so no type checker needs Node's types. */
const NODE_NET = "node:net";
const NODE_TLS = "node:tls";

/**
 * A {@linkcode Transport} over Node's `net.connect`, or `tls.connect` when
 * the `tls` option is given, with TCP no-delay on.
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
 *
 * @example Over TLS, trusting a private CA
 * ```ts ignore
 * import { readFile } from "node:fs/promises";
 * import { ELockClient, nodeTransport } from "@x/elock";
 *
 * const client = await ELockClient.connect({
 *   host: "elock.internal",
 *   transport: nodeTransport(),
 *   tls: { caCerts: [await readFile("ca.pem", "utf8")] },
 * });
 * ```
 */
export function nodeTransport(): Transport {
  return {
    async connect({ host, port, signal, tls }) {
      const connect = tls === undefined
        ? await plainConnect(host, port)
        : await tlsConnect(host, port, tls);
      const open = () =>
        new Promise<Socket>((resolve, reject) => {
          const { socket, ready } = connect();
          const onError = (error: Error) => {
            socket.destroy();
            reject(error);
          };
          socket.once("error", onError);
          socket.once(ready, () => {
            socket.off("error", onError);
            resolve(socket);
          });
        });
      return await _raceAbort(() => open().then(nodeConnection), signal);
    },
  };
}

type Connect = () => { socket: Socket; ready: "connect" | "secureConnect" };

async function plainConnect(host: string, port: number): Promise<Connect> {
  const net = (await import(NODE_NET)) as NodeNet;
  return () => ({ socket: net.connect({ host, port, noDelay: true }), ready: "connect" });
}

async function tlsConnect(host: string, port: number, options: TlsOptions): Promise<Connect> {
  const tls = (await import(NODE_TLS)) as NodeTls;
  const { caCerts, serverName } = options;
  return () => {
    const socket = tls.connect({
      host,
      port,
      ...(serverName === undefined ? {} : { servername: serverName }),
      // Node's `ca` replaces the default roots: keep them, as the other runtimes do.
      ...(caCerts === undefined ? {} : { ca: [...tls.rootCertificates, ...caCerts] }),
    });
    socket.setNoDelay(true);
    return { socket, ready: "secureConnect" };
  };
}

/** Node's socket as a transport connection; `close()` ends it gracefully. */
function nodeConnection(socket: Socket): TransportConnection {
  return nodeSocketStreams(socket);
}
