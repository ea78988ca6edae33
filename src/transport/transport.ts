/**
 * The seam between the protocol core and the runtime: a {@linkcode Transport}
 * opens a byte stream to `host:port` and hands back web streams. One adapter
 * per runtime lives beside this file; the core never touches a socket.
 *
 * @module
 */

/**
 * How to check the server's certificate on a TLS connection. Every field is
 * optional: `{}` verifies the server against the runtime's default roots and
 * the host name connected to.
 *
 * @example Trust a private CA, and check the certificate names `elock.internal`
 * ```ts
 * declare const caPem: string; // "-----BEGIN CERTIFICATE-----\n..."
 * const tls: TlsOptions = { caCerts: [caPem], serverName: "elock.internal" };
 * ```
 */
export interface TlsOptions {
  /**
   * PEM certificates of CAs to trust in addition to the runtime's default
   * roots (e.g. a private CA). Not supported by {@linkcode socketTransport}:
   * Workers trust the public roots only.
   */
  caCerts?: string[];
  /**
   * The name the server's certificate must carry, also sent as SNI. Default:
   * the host connected to (an IP address is checked against the certificate's
   * IP addresses). Not supported by {@linkcode socketTransport}.
   */
  serverName?: string;
}

/**
 * Where to connect, given to {@linkcode Transport.connect}.
 *
 * @example
 * ```ts
 * const options: TransportConnectOptions = { host: "127.0.0.1", port: 11400 };
 * const secure: TransportConnectOptions = { host: "elock.example", port: 11400, tls: {} };
 * ```
 */
export interface TransportConnectOptions {
  /** Host name or IP address. */
  host: string;
  /** TCP port. */
  port: number;
  /** Gives up connecting when aborted: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Speak TLS, checking the server's certificate as given; absent: plain TCP.
   * The promise resolves once the TLS handshake is done, so a certificate
   * that fails the check rejects it.
   */
  tls?: TlsOptions;
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
  /**
   * Closes the connection in both directions, gracefully: ends the write
   * side (the server reads end-of-stream, not a reset), discards what still
   * arrives, and resolves once the server has closed its side too, or
   * forces the socket shut after a bounded wait. Never rejects.
   */
  close(): Promise<void>;
  /**
   * Optional: the same socket without web streams, for the client's own
   * transports (fewer allocations and promise hops per reply). Once
   * {@linkcode RawSocket.start} is called, bytes go to its sink and not to
   * `readable`, and writes go through {@linkcode RawSocket.write} instead
   * of `writable`. A transport without it is read and written through its
   * streams.
   */
  readonly raw?: RawSocket;
}

/**
 * A socket read by callbacks and written directly: see
 * {@linkcode TransportConnection.raw}.
 *
 * @example
 * ```ts ignore
 * connection.raw?.start({ data: (bytes) => parse(bytes), end: () => done() });
 * if (!connection.raw?.write(bytes)) await connection.raw?.drained();
 * ```
 */
export interface RawSocket {
  /**
   * From now on, bytes from the server go to `sink.data` (the array is only
   * valid during the call), and the end of the stream (or its failure) to
   * `sink.end`, once. Nothing is delivered after {@linkcode TransportConnection.close}.
   */
  start(sink: RawSink): void;
  /**
   * Hands `bytes` to the socket (they must not change afterwards).
   *
   * @returns `false` when the socket's buffer is full: wait for {@linkcode RawSocket.drained}
   * @throws {Error} the socket is closed
   */
  write(bytes: Uint8Array): boolean;
  /** Resolves once the socket takes more bytes; rejects when it closed first. */
  drained(): Promise<void>;
}

/**
 * Where a {@linkcode RawSocket} delivers.
 *
 * @example
 * ```ts
 * const sink: RawSink = { data: (bytes) => console.log(bytes.length), end: () => {} };
 * ```
 */
export interface RawSink {
  /** Bytes arrived (valid during the call only). */
  data(bytes: Uint8Array): void;
  /** The stream ended (`error`: it failed). */
  end(error?: unknown): void;
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
 * How long a graceful close waits for the server to close its side before
 * forcing the socket shut, in ms. @internal
 *
 * @example
 * ```ts ignore
 * await _closeGracefully(end, destroy, closed, _CLOSE_GRACE_MS);
 * ```
 */
export const _CLOSE_GRACE_MS = 1000;

/**
 * Closes a socket gracefully: `end()` (half-close: the peer reads
 * end-of-stream once what was written has gone), then waits until `closed`
 * resolves (the peer closed its side too) or `graceMs` pass, and only then
 * `destroy()` and waits for `closed`. Never rejects. @internal
 *
 * @example
 * ```ts ignore
 * const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
 * await _closeGracefully(() => socket.end(), () => socket.destroy(), closed);
 * ```
 */
export async function _closeGracefully(
  end: () => unknown,
  destroy: () => unknown,
  closed: Promise<void>,
  graceMs: number = _CLOSE_GRACE_MS,
): Promise<void> {
  try {
    end();
  } catch {
    // Already ended or closed: the wait below settles it.
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), graceMs));
  const outcome = await Promise.race([closed, late]);
  clearTimeout(timer);
  if (outcome !== "late") return;
  try {
    destroy();
  } catch {
    // Already closed.
  }
  await closed;
}

/**
 * Checks the fields of a {@linkcode TlsOptions}. @internal
 *
 * @throws {TypeError} `caCerts` is not an array of PEM strings, or
 *   `serverName` is not a non-empty string
 */
export function _checkTlsOptions(tls: TlsOptions): void {
  if (typeof tls !== "object" || tls === null) {
    throw new TypeError(`Invalid tls option: ${String(tls)} (expected true, false or an object)`);
  }
  for (const name of Object.keys(tls)) {
    if (name !== "caCerts" && name !== "serverName") {
      throw new TypeError(
        `Invalid tls option: unknown name ${
          JSON.stringify(name)
        }; the names are: caCerts, serverName`,
      );
    }
  }
  const { caCerts, serverName } = tls;
  if (
    caCerts !== undefined &&
    (!Array.isArray(caCerts) ||
      !caCerts.every((c) => typeof c === "string" && c.includes("-----BEGIN")))
  ) {
    throw new TypeError("Invalid tls.caCerts: expected an array of PEM certificate strings");
  }
  if (serverName !== undefined && (typeof serverName !== "string" || serverName === "")) {
    throw new TypeError(`Invalid tls.serverName: ${String(serverName)}`);
  }
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
