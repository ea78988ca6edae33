/**
 * @x/elock: the eLock client for TypeScript, for Node, Deno, Bun and edge
 * workers, with a bundled eLock server (`@x/elock/server`).
 *
 * ```ts
 * import { ELockClient } from "@x/elock";
 * import { startServer } from "@x/elock/server";
 *
 * await using server = await startServer({ port: 0 });
 * await using client = await ELockClient.connect({ port: server.port });
 * await client.withLock("invoice-42", async () => {
 *   // only one holder of "invoice-42" at a time, across processes and machines
 * }, { timeout: 5000 });
 * ```
 *
 * @module
 */

export { ELockClient } from "./src/client/client.ts";
export type {
  AcquireOptions,
  ConnectOptions,
  LockOptions,
  ReconnectOptions,
} from "./src/client/options.ts";
export { ELockClientEvent } from "./src/client/events.ts";
export type {
  ELockClientEventInit,
  ELockClientEventListener,
  ELockClientEventMap,
  ELockClientEventType,
} from "./src/client/events.ts";
export { HeldLock } from "./src/client/held_lock.ts";
export { ELockLockManager } from "./src/client/lock_manager.ts";
export type {
  ELockLock,
  ELockLockInfo,
  ELockLockManagerSnapshot,
  ELockLockMode,
  ELockLockOptions,
} from "./src/client/lock_manager.ts";
export {
  ConnectionClosedError,
  DeadlockError,
  ELockError,
  InvalidKeyError,
  LockUnavailableError,
  parseDeadlockPath,
  ProtocolError,
  SessionLostError,
  UnexpectedResponseError,
  UnsupportedCommandError,
} from "./src/errors.ts";
export type { DeadlockEdge, ELockErrorOptions, KeyKind } from "./src/errors.ts";
export type { KeyEncoding } from "./src/protocol/commands.ts";
export type { Logger } from "./src/protocol/connection.ts";
export type {
  DebugInfo,
  DebugLock,
  DebugRequest,
  DebugSession,
  Reply,
  Stats,
} from "./src/protocol/reply_reader.ts";
export type {
  RawSink,
  RawSocket,
  TlsOptions,
  Transport,
  TransportConnection,
  TransportConnectOptions,
} from "./src/transport/transport.ts";
export { defaultTransport } from "./src/transport/default.ts";
export { nodeTransport } from "./src/transport/node.ts";
export { denoTransport } from "./src/transport/deno.ts";
export { bunTransport } from "./src/transport/bun.ts";
export { socketTransport } from "./src/transport/socket.ts";
export type { SocketConnect, SocketConnectOptions, SocketLike } from "./src/transport/socket.ts";
export { DEFAULT_PORT } from "./src/protocol/limits.ts";
export { isSessionName, sessionName } from "./src/protocol/session_name.ts";
export type { Dialect } from "./src/server/mod.ts";
