/**
 * A bundled server per test, and clients that are always closed.
 *
 * @module
 */

import { type ConnectOptions, ELockClient } from "../../mod.ts";
import {
  type Dialect,
  type ELockServer,
  type ServerEvent,
  startServer,
} from "../../src/server/mod.ts";
import { until } from "./wait.ts";

/** Both dialects, in the order tests are declared. */
export const DIALECTS: readonly Dialect[] = ["original", "extended"];

/** A running server and a way to open clients that are closed with it. */
export interface Fixture {
  readonly server: ELockServer;
  readonly port: number;
  /** Connects a client to the fixture's server; it is closed at the end. */
  connect(options?: ConnectOptions): Promise<ELockClient>;
  /** Resolves once `count` lock requests for `key` have started waiting on the server. */
  waits(key: string, count?: number): Promise<void>;
  /** What the server did so far, in order. */
  readonly events: readonly ServerEvent[];
}

/** Runs `fn` against a fresh server of `dialect`, then closes every client and the server. */
export async function withServer(
  dialect: Dialect,
  fn: (fixture: Fixture) => Promise<void>,
): Promise<void> {
  const events: ServerEvent[] = [];
  const server = await startServer({ port: 0, dialect, onEvent: (e) => events.push(e) });
  const clients: ELockClient[] = [];
  try {
    await fn({
      server,
      port: server.port,
      events,
      async connect(options = {}) {
        const client = await ELockClient.connect({ port: server.port, ...options });
        clients.push(client);
        return client;
      },
      waits: (key, count = 1) =>
        until(
          () => events.filter((e) => e.type === "wait" && e.key === key).length >= count,
          `${count} wait(s) for ${key}`,
        ),
    });
  } finally {
    await Promise.all(clients.map((client) => client.close()));
    await server.close();
  }
}

/** A port on 127.0.0.1 that nothing listens on (a server's, after it closed). */
export async function closedPort(): Promise<number> {
  const server = await startServer({ port: 0 });
  await server.close();
  return server.port;
}
