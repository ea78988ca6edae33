/**
 * Listener adapter for `Deno.listen`, or `Deno.listenTls` for a TLS server.
 *
 * @module
 */

import type { ServerConnection } from "./connection.ts";
import type { Listen } from "./listener.ts";

/** The part of a `Deno.TcpConn` this adapter uses. */
interface DenoConn {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly remoteAddr: { hostname: string; port: number };
  setNoDelay(noDelay?: boolean): void;
  close(): void;
}

/** The part of a `Deno.Listener` this adapter uses. */
interface DenoListener extends AsyncIterable<DenoConn> {
  readonly addr: { hostname: string; port: number };
  close(): void;
}

interface DenoNamespace {
  listen(options: { hostname: string; port: number; transport: "tcp" }): DenoListener;
  listenTls(options: {
    hostname: string;
    port: number;
    transport: "tcp";
    cert: string;
    key: string;
  }): DenoListener;
}

/** Listens with `Deno.listen`, or `Deno.listenTls` when `options.tls` is given. */
export const listenDeno: Listen = (options, onConnection) => {
  const deno = (globalThis as unknown as { Deno: DenoNamespace }).Deno;
  const where = { hostname: options.hostname, port: options.port, transport: "tcp" } as const;
  const listener = options.tls === undefined
    ? deno.listen(where)
    : deno.listenTls({ ...where, cert: options.tls.cert, key: options.tls.key });
  const accepting = (async () => {
    try {
      for await (const conn of listener) onConnection(denoConnection(conn));
    } catch {
      // The listener was closed.
    }
  })();
  return Promise.resolve({
    hostname: listener.addr.hostname,
    port: listener.addr.port,
    close: async () => {
      try {
        listener.close();
      } catch {
        // Already closed.
      }
      await accepting;
    },
  });
};

function denoConnection(conn: DenoConn): ServerConnection {
  try {
    conn.setNoDelay(true);
  } catch {
    // Not every socket type supports it.
  }
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch {
      // Closed by the peer already.
    }
  };
  return {
    readable: conn.readable,
    writable: conn.writable,
    remoteAddress: `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`,
    close,
    abort: close,
  };
}
