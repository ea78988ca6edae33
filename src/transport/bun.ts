/**
 * Transport over `Bun.connect`: Bun's callback socket turned into web
 * streams, with partial writes finished on `drain` and reads paused while
 * the reader is behind. `Bun` is touched only when a connection is made.
 *
 * @module
 */

import {
  bunSocketEvents,
  type BunSocketLike,
  bunSocketStreams,
  newBunStreamState,
} from "./bun_streams.ts";
import {
  _raceAbort,
  type TlsOptions,
  type Transport,
  type TransportConnection,
} from "./transport.ts";

interface BunSocket extends BunSocketLike {
  setNoDelay(noDelay: boolean): void;
}

interface BunTls {
  ca?: string[];
  serverName?: string;
  rejectUnauthorized: boolean;
}

interface BunNamespace {
  connect(options: {
    hostname: string;
    port: number;
    tls?: BunTls | boolean;
    socket: {
      data(socket: BunSocket, chunk: Uint8Array): void;
      drain(socket: BunSocket): void;
      end(socket: BunSocket): void;
      close(socket: BunSocket): void;
      error(socket: BunSocket, error: Error): void;
      handshake?(socket: BunSocket, success: boolean, error: Error | null): void;
    };
  }): Promise<BunSocket>;
}

/** `node:tls`, for its default roots, named through a variable so no type checker needs Node's types. */
const NODE_TLS = "node:tls";

/**
 * A {@linkcode Transport} over `Bun.connect`, with TCP no-delay on. With the
 * `tls` option, Bun's `tls` settings; the TLS handshake is done before the
 * connection is handed over.
 *
 * @returns the transport
 *
 * @example
 * ```ts
 * import { bunTransport, ELockClient } from "@x/elock";
 *
 * const client = await ELockClient.connect({ port: 11400, transport: bunTransport() });
 * await client.close();
 * ```
 *
 * @example Over TLS, trusting a private CA
 * ```ts ignore
 * import { bunTransport, ELockClient } from "@x/elock";
 *
 * const client = await ELockClient.connect({
 *   host: "elock.internal",
 *   transport: bunTransport(),
 *   tls: { caCerts: [await Bun.file("ca.pem").text()] },
 * });
 * ```
 */
export function bunTransport(): Transport {
  return {
    async connect({ host, port, signal, tls }) {
      const bun = (globalThis as unknown as { Bun: BunNamespace }).Bun;
      const bunTls = tls === undefined ? undefined : await bunTlsOptions(tls);
      const state = newBunStreamState();
      let handshake: { resolve(): void; reject(error: Error): void } | null = null;
      const handshaken = bunTls === undefined ? null : new Promise<void>((resolve, reject) => {
        handshake = { resolve, reject };
      });
      const open = async () => {
        const socket = await bun.connect({
          hostname: host,
          port,
          ...(bunTls === undefined ? {} : { tls: bunTls }),
          socket: {
            data: (socket, chunk) => bunSocketEvents.data(state, socket, chunk),
            drain: (socket) => bunSocketEvents.drain(state, socket),
            end: () => bunSocketEvents.end(state),
            close: () => {
              handshake?.reject(new Error("TLS handshake failed: the connection closed"));
              bunSocketEvents.close(state);
            },
            error: (_socket, error) => {
              handshake?.reject(error);
              bunSocketEvents.error(state, error);
            },
            handshake: (_socket, success, error) => {
              // `error`: the certificate failed a check (chain or name). The
              // connection is closed below, gracefully.
              if (success && error === null) return handshake?.resolve();
              handshake?.reject(error ?? new Error("TLS handshake failed"));
            },
          },
        });
        const connection: TransportConnection = bunSocketStreams(socket, state);
        try {
          await handshaken;
        } catch (error) {
          void connection.close();
          throw error;
        }
        socket.setNoDelay(true);
        return connection;
      };
      return await _raceAbort(open, signal);
    },
  };
}

/**
 * Bun's settings for `tls`. Bun's `ca` replaces the default roots: keep them,
 * as the other runtimes do. `rejectUnauthorized` is off because with it on,
 * Bun closes a connection whose certificate chain fails without saying why;
 * off, the `handshake` callback gets the reason, and the adapter refuses
 * every handshake that reports one.
 */
async function bunTlsOptions({ caCerts, serverName }: TlsOptions): Promise<BunTls> {
  const options: BunTls = { rejectUnauthorized: false };
  if (caCerts !== undefined) {
    const { rootCertificates } = (await import(NODE_TLS)) as {
      rootCertificates: readonly string[];
    };
    options.ca = [...rootCertificates, ...caCerts];
  }
  if (serverName !== undefined) options.serverName = serverName;
  return options;
}
