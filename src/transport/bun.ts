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
import { _raceAbort, type Transport, type TransportConnection } from "./transport.ts";

interface BunSocket extends BunSocketLike {
  setNoDelay(noDelay: boolean): void;
}

interface BunNamespace {
  connect(options: {
    hostname: string;
    port: number;
    socket: {
      data(socket: BunSocket, chunk: Uint8Array): void;
      drain(socket: BunSocket): void;
      end(socket: BunSocket): void;
      close(socket: BunSocket): void;
      error(socket: BunSocket, error: Error): void;
    };
  }): Promise<BunSocket>;
}

/**
 * A {@linkcode Transport} over `Bun.connect`, with TCP no-delay on.
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
 */
export function bunTransport(): Transport {
  return {
    async connect({ host, port, signal }) {
      const bun = (globalThis as unknown as { Bun: BunNamespace }).Bun;
      const state = newBunStreamState();
      const open = () =>
        bun.connect({
          hostname: host,
          port,
          socket: {
            data: (socket, chunk) => bunSocketEvents.data(state, socket, chunk),
            drain: (socket) => bunSocketEvents.drain(state, socket),
            end: () => bunSocketEvents.end(state),
            close: () => bunSocketEvents.close(state),
            error: (_socket, error) => bunSocketEvents.error(state, error),
          },
        }).then((socket) => ({ socket, close: () => socket.terminate() }));
      const { socket } = await _raceAbort(open, signal);
      socket.setNoDelay(true);
      const closed = new Promise<void>((resolve) => {
        if (state.closed) resolve();
        else state.onClosed = resolve;
      });
      return {
        ...bunSocketStreams(socket, state),
        close(): Promise<void> {
          if (!state.closed) socket.terminate();
          return closed;
        },
      } satisfies TransportConnection;
    },
  };
}
