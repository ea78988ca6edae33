/**
 * Transport over `Deno.connect`, upgraded with `Deno.startTls` for TLS
 * connections. `Deno` is touched only when a connection is made.
 *
 * @module
 */

import {
  _closeGracefully,
  _raceAbort,
  type TlsOptions,
  type Transport,
  type TransportConnection,
} from "./transport.ts";

/** The part of a `Deno.TcpConn` or `Deno.TlsConn` this adapter uses. */
interface DenoConn {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  /** Half-closes: shuts the write side down (a FIN), the read side stays open. */
  closeWrite(): Promise<void>;
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
      const open = async () =>
        denoConnection(
          tls === undefined
            ? await connectTcp(deno, host, port)
            : await connectTls(deno, host, port, tls),
        );
      return await _raceAbort(open, signal);
    },
  };
}

/**
 * The connection's streams, wrapped: Deno's own close the whole connection
 * at once when the readable is cancelled or the writable closed or aborted,
 * and bytes the server still sends are then answered with a reset. Here
 * closing the writable half-closes (`closeWrite()`), and cancelling the
 * readable, aborting the writable and `close()` close gracefully:
 * `closeWrite()`, read and drop what still arrives until the server closes
 * its side (or a bounded wait ends), then `close()`.
 */
function denoConnection(conn: DenoConn): TransportConnection {
  const source = conn.readable.getReader();
  const sink = conn.writable.getWriter();
  let deliver: ReadableStreamDefaultController<Uint8Array> | null = null;
  let closing: Promise<void> | null = null;
  const close = () =>
    closing ??= (async () => {
      const controller = deliver;
      deliver = null;
      try {
        controller?.close();
      } catch {
        // Already closed or cancelled.
      }
      // Read to the end (the server's FIN), dropping what arrives.
      const drained = (async () => {
        try {
          while (!(await source.read()).done);
        } catch {
          // Reset or closed: the end all the same.
        }
      })();
      await _closeGracefully(
        () => conn.closeWrite().catch(() => {}),
        () => closeQuietly(conn), // ends the read above
        drained,
      );
      closeQuietly(conn);
    })();
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      deliver = controller;
    },
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await source.read();
      } catch (error) {
        if (deliver === controller) controller.error(error);
        return;
      }
      if (deliver !== controller) return;
      if (chunk.done) {
        deliver = null;
        controller.close();
      } else {
        controller.enqueue(chunk.value);
      }
    },
    cancel() {
      deliver = null;
      return close();
    },
  }, { highWaterMark: 0 });
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      return sink.write(chunk);
    },
    close() {
      return conn.closeWrite();
    },
    abort() {
      return close();
    },
  });
  return { readable, writable, close };
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
