/**
 * A small program using the package, type-checked with `tsc --strict`
 * against the installed `.d.ts` files by types_test.ts. The
 * `@ts-expect-error` lines must be errors, or the check fails.
 *
 * @module
 */

import {
  type ConnectOptions,
  type DebugInfo,
  DEFAULT_PORT,
  ELockClient,
  type ELockClientEventMap,
  ELockError,
  type HeldLock,
  LockUnavailableError,
  type SessionLostError,
  type Stats,
} from "@x/elock";
import { type ELockServer, type ServerOptions, startServer } from "@x/elock/server";

/** Locks, reads the server's state, and returns the number of locks it saw. */
export async function consume(options: ServerOptions): Promise<number> {
  const server: ELockServer = await startServer(options);
  const settings: ConnectOptions = { port: server.port, releaseTimeout: 0, keyEncoding: "sha1" };
  const client = await ELockClient.connect(settings);
  try {
    const locked: boolean = await client.lock("invoice-42", { timeout: 1000 });
    const stats: Stats = await client.stats();
    const info: DebugInfo = await client.debug();
    const held: HeldLock = await client.acquire("ledger", { timeout: 1000 });
    await held.release();
    const count: number = await client.withLock("ledger", () => info.locks.length);
    // @ts-expect-error: keys are strings
    await client.lock(42);
    // @ts-expect-error: there is no such key encoding
    await ELockClient.connect({ keyEncoding: "base64" });
    return (locked ? 1 : 0) + stats.locks + count + DEFAULT_PORT;
  } catch (error) {
    if (error instanceof LockUnavailableError) return error.key.length;
    if (error instanceof ELockError) return -1;
    throw error;
  } finally {
    await client.close();
    await server.close();
  }
}

/** Listens to every event of the client, reading each one's typed fields without a cast. */
export function listen(client: ELockClient, log: (line: string) => void): () => void {
  client.addEventListener("connect", (event) => log(`${event.type} to ${client.port}`));
  client.addEventListener("disconnect", (event) => {
    const error: ELockError = event.error;
    log(`disconnect: ${error.message}`);
  });
  client.addEventListener("reconnect", (event) => {
    const attempt: number = event.attempt;
    log(`reconnection attempt ${attempt.toFixed(0)}`);
  });
  client.addEventListener("resume", (event) => {
    const sessionId: string = event.sessionId;
    log(`resumed ${sessionId.toUpperCase()}`);
  });
  client.addEventListener("sessionlost", (event) => {
    const keys: readonly string[] = event.keys;
    const error: SessionLostError = event.error;
    const sessionId: string = event.sessionId;
    log(`lost ${keys.join(", ")} of ${sessionId}: ${error.message}`);
  }, { once: true });
  const onError = (event: ELockClientEventMap["error"]) => {
    const attempt: number | undefined = event.attempt;
    log(`error (attempt ${attempt ?? "none"}): ${String(event.error)}`);
  };
  client.addEventListener("error", onError);
  // @ts-expect-error: a connect event has no attempt number
  client.addEventListener("connect", (event) => log(event.attempt.toFixed(0)));
  return () => client.removeEventListener("error", onError);
}
