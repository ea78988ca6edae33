/**
 * The seam between the server core and a runtime's TCP listener.
 *
 * @module
 */

import type { ServerConnection } from "./connection.ts";

/**
 * The server's certificate and private key, for TLS.
 *
 * @example
 * ```ts
 * declare const certPem: string, keyPem: string;
 * const tls: ServerTlsOptions = { cert: certPem, key: keyPem };
 * ```
 */
export interface ServerTlsOptions {
  /** The certificate chain, PEM: the server's certificate first, then any intermediates. */
  readonly cert: string;
  /** The certificate's private key, PEM (unencrypted). */
  readonly key: string;
}

/**
 * Where to listen.
 *
 * @example
 * ```ts
 * const options: ListenOptions = { hostname: "::1", port: 0 };
 * ```
 */
export interface ListenOptions {
  /** Address to bind, e.g. `127.0.0.1` or `::1`. */
  readonly hostname: string;
  /** Port to bind; 0 picks a free one. */
  readonly port: number;
  /**
   * TCP keepalive on accepted sockets: ms of idleness before the first
   * probe; 0 or absent: off.
   */
  readonly keepAlive?: number;
  /** Accept TLS connections only, with this certificate; absent: plain TCP. */
  readonly tls?: ServerTlsOptions;
}

/**
 * A bound TCP listener.
 *
 * @example
 * ```ts
 * declare const listener: Listener;
 * console.log(`bound ${listener.hostname}:${listener.port}`);
 * await listener.close();
 * ```
 */
export interface Listener {
  /** The address actually bound. */
  readonly hostname: string;
  /** The port actually bound. */
  readonly port: number;
  /** Stops accepting connections (open ones are left alone). */
  close(): Promise<void>;
}

/**
 * Binds a listener and hands every accepted socket to `onConnection`.
 *
 * @example
 * ```ts
 * const listen: Listen = (options, onConnection) => {
 *   // bind options.hostname:options.port, call onConnection per socket
 *   void onConnection;
 *   return Promise.resolve({ ...options, close: () => Promise.resolve() });
 * };
 * ```
 */
export type Listen = (
  options: ListenOptions,
  onConnection: (conn: ServerConnection) => void,
) => Promise<Listener>;
