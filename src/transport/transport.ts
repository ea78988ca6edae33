/**
 * The seam between the protocol core and the runtime: a {@linkcode Transport}
 * opens a byte stream to `host:port` and hands back web streams. One adapter
 * per runtime lives beside this file; the core never touches a socket.
 *
 * @module
 */

/**
 * Where to connect, given to {@linkcode Transport.connect}.
 *
 * @example
 * ```ts
 * const options: TransportConnectOptions = { host: "127.0.0.1", port: 11400 };
 * ```
 */
export interface TransportConnectOptions {
  /** Host name or IP address. */
  host: string;
  /** TCP port. */
  port: number;
  /** Gives up connecting when aborted: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * An open connection: bytes from the server on `readable`, bytes to the
 * server on `writable`.
 *
 * @example
 * ```ts
 * const echo = new TransformStream<Uint8Array, Uint8Array>();
 * const connection: TransportConnection = {
 *   readable: echo.readable,
 *   writable: echo.writable,
 *   close: () => Promise.resolve(),
 * };
 * ```
 */
export interface TransportConnection {
  /** Bytes from the server. Ends when the server closes the connection. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the server. A write resolves once the bytes are handed to the socket. */
  readonly writable: WritableStream<Uint8Array>;
  /** Closes the connection at once, in both directions. Never rejects. */
  close(): Promise<void>;
}

/**
 * Opens connections. Adapters: {@linkcode nodeTransport} (Node `net`),
 * {@linkcode denoTransport} (`Deno.connect`), {@linkcode bunTransport}
 * (`Bun.connect`) and {@linkcode socketTransport} (a `connect()` like the one
 * of `cloudflare:sockets`).
 *
 * @example Writing one
 * ```ts
 * import type { Transport } from "@x/elock";
 *
 * const logged = (inner: Transport): Transport => ({
 *   async connect(options) {
 *     console.log(`connecting to ${options.host}:${options.port}`);
 *     return await inner.connect(options);
 *   },
 * });
 * ```
 */
export interface Transport {
  /**
   * Opens a connection.
   *
   * @param options host, port and an optional `signal`
   * @returns the open connection
   * @throws whatever the runtime throws when the connection cannot be made,
   *   or the signal's reason
   */
  connect(options: TransportConnectOptions): Promise<TransportConnection>;
}

/**
 * Runs `open` unless the signal is already aborted, and settles with it, or
 * rejects with the signal's reason when it aborts first; a connection that
 * opens after the abort is closed. @internal
 */
export function _raceAbort<T extends { close(): unknown }>(
  open: () => Promise<T>,
  signal: AbortSignal | undefined,
): Promise<T> {
  if (signal === undefined) return open();
  if (signal.aborted) return Promise.reject(signal.reason);
  const opening = open();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason);
      opening.then((connection) => connection.close(), () => {});
    };
    signal.addEventListener("abort", onAbort, { once: true });
    opening.then(
      (connection) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) return;
        resolve(connection);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
