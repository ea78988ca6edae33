/**
 * Transport over `Deno.connect`, upgraded with `Deno.startTls` for TLS
 * connections. `Deno` is touched only when a connection is made.
 *
 * @module
 */

import { _raceAbort, type TlsOptions, type Transport } from "./transport.ts";

/** The part of a `Deno.TcpConn` or `Deno.TlsConn` this adapter uses. */
interface DenoConn {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  close(): void;
}

interface DenoTcpConn extends DenoConn {
  setNoDelay(noDelay?: boolean): void;
}

interface DenoTlsConn extends DenoConn {
  handshake(): Promise<unknown>;
}

interface DenoNamespace {
  connect(options: { hostname: string; port: number; transport: "tcp" }): Promise<DenoTcpConn>;
  startTls(
    conn: DenoTcpConn,
    options: { hostname: string; caCerts?: string[] },
  ): Promise<DenoTlsConn>;
}

/**
 * A {@linkcode Transport} over `Deno.connect`, with TCP no-delay on. With the
 * `tls` option the connection is upgraded with `Deno.startTls` (rather than
 * opened with `Deno.connectTls`, whose connections have no no-delay switch
 * and no name to check other than the host), and the handshake is done
 * before the connection is handed over.
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
 *
 * @example Over TLS, trusting a private CA
 * ```ts ignore
 * import { denoTransport, ELockClient } from "@x/elock";
 *
 * const client = await ELockClient.connect({
 *   host: "elock.internal",
 *   transport: denoTransport(),
 *   tls: { caCerts: [await Deno.readTextFile("ca.pem")] },
 * });
 * ```
 */
export function denoTransport(): Transport {
  return {
    async connect({ host, port, signal, tls }) {
      const deno = (globalThis as unknown as { Deno: DenoNamespace }).Deno;
      const open = async () => {
        const conn = tls === undefined
          ? await connectTcp(deno, host, port)
          : await connectTls(deno, host, port, tls);
        return { conn, close: () => closeQuietly(conn) };
      };
      const { conn } = await _raceAbort(open, signal);
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

async function connectTcp(deno: DenoNamespace, host: string, port: number): Promise<DenoTcpConn> {
  const conn = await deno.connect({ hostname: host, port, transport: "tcp" });
  conn.setNoDelay(true);
  return conn;
}

async function connectTls(
  deno: DenoNamespace,
  host: string,
  port: number,
  { caCerts, serverName }: TlsOptions,
): Promise<DenoTlsConn> {
  const tcp = await connectTcp(deno, host, port);
  let conn: DenoTlsConn;
  try {
    conn = await deno.startTls(tcp, {
      hostname: serverName ?? host,
      ...(caCerts === undefined ? {} : { caCerts }),
    });
  } catch (error) {
    closeQuietly(tcp);
    throw error;
  }
  try {
    await conn.handshake();
  } catch (error) {
    closeQuietly(conn);
    throw error;
  }
  return conn;
}

function closeQuietly(conn: DenoConn): void {
  try {
    conn.close();
  } catch {
    // Already closed (the streams close it when they end).
  }
}
