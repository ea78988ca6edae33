/**
 * Transport over a `connect()` like the one of `cloudflare:sockets`: the
 * caller passes the function in, so this package never imports it.
 *
 * @module
 */

import { _raceAbort, type Transport } from "./transport.ts";

/**
 * A socket as `connect()` of `cloudflare:sockets` returns it.
 *
 * @example
 * ```ts
 * declare const socket: SocketLike;
 * await socket.opened;
 * await socket.close();
 * ```
 */
export interface SocketLike {
  /** Bytes from the server. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the server. */
  readonly writable: WritableStream<Uint8Array>;
  /** Resolves once the connection is open; rejects when it cannot be made. */
  readonly opened: Promise<unknown>;
  /** Closes the socket. */
  close(): Promise<unknown>;
}

/**
 * The options this package passes to a {@linkcode SocketConnect}: those of
 * `cloudflare:sockets` it uses.
 *
 * @example
 * ```ts
 * const options: SocketConnectOptions = { secureTransport: "on" };
 * ```
 */
export interface SocketConnectOptions {
  /** `"on"`: TLS from the first byte (the `tls` option); `"off"`: plain TCP. */
  secureTransport: "on" | "off";
}

/**
 * A function like `connect` of `cloudflare:sockets`.
 *
 * @param address where to connect
 * @param options whether to speak TLS
 * @returns the socket, opening
 *
 * @example
 * ```ts
 * declare const connect: SocketConnect; // e.g. from "cloudflare:sockets"
 * const socket = connect({ hostname: "127.0.0.1", port: 11400 }, { secureTransport: "off" });
 * await socket.opened;
 * ```
 */
export type SocketConnect = (
  address: { hostname: string; port: number },
  options: SocketConnectOptions,
) => SocketLike;

/**
 * A {@linkcode Transport} over `connect()` of `cloudflare:sockets` (or any
 * function shaped like it). Cloudflare's sockets have no no-delay switch.
 *
 * The `tls` option connects with `secureTransport: "on"`; the Workers
 * runtime checks the certificate against the public roots and the host
 * name, so `tls.caCerts` and `tls.serverName` cannot be honoured there and
 * make `connect()` reject with a `TypeError`.
 *
 * @param connect the runtime's `connect` function
 * @returns the transport
 *
 * @example In a Cloudflare Worker
 * ```ts ignore
 * import { connect } from "cloudflare:sockets";
 * import { ELockClient, socketTransport } from "@x/elock";
 *
 * export default {
 *   async fetch(): Promise<Response> {
 *     await using client = await ELockClient.connect({
 *       host: "elock.internal",
 *       transport: socketTransport(connect),
 *     });
 *     const locked = await client.lock("report", { timeout: 2000 });
 *     return new Response(locked ? "locked" : "busy");
 *   },
 * };
 * ```
 *
 * @example Over TLS, to a server with a publicly trusted certificate
 * ```ts ignore
 * import { connect } from "cloudflare:sockets";
 * import { ELockClient, socketTransport } from "@x/elock";
 *
 * const client = await ELockClient.connect({
 *   host: "elock.example.com",
 *   transport: socketTransport(connect),
 *   tls: true,
 * });
 * ```
 */
export function socketTransport(connect: SocketConnect): Transport {
  if (typeof connect !== "function") {
    throw new TypeError("socketTransport() needs a connect function, e.g. from cloudflare:sockets");
  }
  return {
    async connect({ host, port, signal, tls }) {
      if (tls?.caCerts !== undefined) {
        throw new TypeError(
          "socketTransport() cannot trust extra CAs (tls.caCerts): cloudflare:sockets " +
            "checks certificates against the public roots only",
        );
      }
      if (tls?.serverName !== undefined) {
        throw new TypeError(
          "socketTransport() cannot check another name than the host (tls.serverName): " +
            "connect to that name instead",
        );
      }
      const secureTransport = tls === undefined ? "off" : "on";
      const open = async () => {
        const socket = connect({ hostname: host, port }, { secureTransport });
        const close = async () => {
          try {
            await socket.close();
          } catch {
            // Already closed or failed.
          }
        };
        try {
          await socket.opened;
        } catch (error) {
          await close();
          throw error;
        }
        return { socket, close };
      };
      const { socket, close } = await _raceAbort(open, signal);
      return { readable: socket.readable, writable: socket.writable, close };
    },
  };
}
