/**
 * Transport over `Deno.connect`. `Deno` is touched only when a connection
 * is made.
 *
 * @module
 */

import { _raceAbort, type Transport } from "./transport.ts";

/** The part of a `Deno.TcpConn` this adapter uses. */
interface DenoConn {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  setNoDelay(noDelay?: boolean): void;
  close(): void;
}

interface DenoNamespace {
  connect(options: { hostname: string; port: number; transport: "tcp" }): Promise<DenoConn>;
}

/**
 * A {@linkcode Transport} over `Deno.connect`, with TCP no-delay on.
 *
 * @returns the transport
 *
 * @example
 * ```ts
 * import { denoTransport, ELockClient } from "@x/elock";
 *
 * const client = await ELockClient.connect({ port: 11400, transport: denoTransport() });
 * await client.close();
 * ```
 */
export function denoTransport(): Transport {
  return {
    async connect({ host, port, signal }) {
      const deno = (globalThis as unknown as { Deno: DenoNamespace }).Deno;
      const open = () =>
        deno.connect({ hostname: host, port, transport: "tcp" }).then((conn) => ({
          conn,
          close: () => closeQuietly(conn),
        }));
      const { conn } = await _raceAbort(open, signal);
      conn.setNoDelay(true);
      let closed = false;
      return {
        readable: conn.readable,
        writable: conn.writable,
        close() {
          if (!closed) {
            closed = true;
            closeQuietly(conn);
          }
          return Promise.resolve();
        },
      };
    },
  };
}

function closeQuietly(conn: DenoConn): void {
  try {
    conn.close();
  } catch {
    // Already closed (the streams close it when they end).
  }
}
