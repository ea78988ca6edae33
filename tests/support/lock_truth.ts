/**
 * The fixture of the lock-truth tests (tests/lock_truth_test.ts,
 * tests/lock_truth_loss_test.ts): a bundled server that reports every
 * command it answered, a fault proxy in front of it for the client under
 * test, probe clients straight on the server, and a restart on the same
 * port (a server that lost every session). Everything is closed at the end.
 *
 * @module
 */

import {
  type ConnectOptions,
  ELockClient,
  type ELockClientEvent,
  type ELockClientEventType,
} from "../../mod.ts";
import { type Dialect, type ELockServer, startServer } from "../../src/server/mod.ts";
import { type Proxy, startProxy } from "./proxy.ts";
import { until } from "./wait.ts";

/** A command a server answered. */
export interface Answered {
  readonly session: string;
  readonly line: string;
  readonly reply: string;
}

/** What {@linkcode withTruth} hands a test. */
export interface Truth {
  readonly dialect: Dialect;
  /** The server running now (a new one after {@linkcode Truth.restart}). */
  readonly server: ELockServer;
  /** The fault proxy in front of the server. */
  readonly proxy: Proxy;
  /** Every command the servers answered, in order (also those of a restarted server). */
  readonly answered: Answered[];
  /** A client through the proxy (closed at the end). */
  connect(options?: ConnectOptions): Promise<ELockClient>;
  /** A second, independent client straight on the server, release timeout 0. */
  probe(): Promise<ELockClient>;
  /** Resolves once the server has answered `count` commands whose line matches. */
  served(line: string | RegExp, count?: number): Promise<void>;
  /** Closes the server (every session is gone) and starts a new one on the same port. */
  restart(): Promise<void>;
}

/** Runs `fn` with a fresh server of `dialect` and a proxy in front of it; closes everything. */
export async function withTruth(dialect: Dialect, fn: (truth: Truth) => Promise<void>) {
  const answered: Answered[] = [];
  const onEvent = (event: { type: string }) => {
    if (event.type === "command") answered.push(event as unknown as Answered);
  };
  let server = await startServer({ port: 0, dialect, verbose: true, onEvent });
  const servers = [server];
  const clients: ELockClient[] = [];
  let proxy: Proxy | null = null;
  try {
    proxy = await startProxy(server.port);
    const through = proxy;
    const open = async (options: ConnectOptions) => {
      const client = await ELockClient.connect(options);
      clients.push(client);
      return client;
    };
    await fn({
      dialect,
      get server() {
        return server;
      },
      proxy: through,
      answered,
      connect: (options = {}) => open({ port: through.port, ...options }),
      probe: () => open({ port: server.port, releaseTimeout: 0 }),
      served: (line, count = 1) =>
        until(
          () =>
            answered.filter((a) => typeof line === "string" ? a.line === line : line.test(a.line))
              .length >= count,
          `the server answered ${count} × ${line}`,
          20_000,
        ),
      async restart() {
        const port = server.port;
        await server.close();
        server = await startServer({ port, dialect, verbose: true, onEvent });
        servers.push(server);
      },
    });
  } finally {
    await Promise.allSettled(clients.map((client) => client.close()));
    await proxy?.close();
    for (const s of servers) await s.close();
  }
}

/** Records the client's events, in order. */
export function record(client: ELockClient): ELockClientEvent[] {
  const events: ELockClientEvent[] = [];
  const types: ELockClientEventType[] = [
    "connect",
    "disconnect",
    "reconnect",
    "resume",
    "sessionlost",
    "error",
  ];
  for (const type of types) {
    client.addEventListener(type, (event) => events.push(event as ELockClientEvent));
  }
  return events;
}

/** Waits (generously) until `events` holds one of `type`. */
export function happened(
  events: ELockClientEvent[],
  type: ELockClientEventType,
  timeoutMs = 20_000,
): Promise<void> {
  return until(() => events.some((e) => e.type === type), `a ${type} event`, timeoutMs);
}

/** Whether any connection through `proxy` has sent text matching `pattern`. */
export function sentAny(proxy: Proxy, pattern: RegExp): boolean {
  return proxy.sent.some((text) => pattern.test(text));
}

/** `promise`, or a rejection saying `what` did not happen within `ms` (a hang guard). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, guard]);
  } finally {
    clearTimeout(timer);
  }
}

/** How `promise` settled: `{ value }` or `{ error }`. */
export function outcome<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  return promise.then((value) => ({ value }), (error: unknown) => ({ error }));
}

/** Resolves when `signal` aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/** A promise with its resolve function outside. */
export function deferred<T = void>(): { promise: Promise<T>; resolve(value: T): void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}
