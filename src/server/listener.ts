/**
 * The seam between the server core and a runtime's TCP listener.
 *
 * @module
 */

import type { ServerConnection } from "./connection.ts";

/** Where to listen. */
export interface ListenOptions {
  /** Address to bind, e.g. `127.0.0.1` or `::1`. */
  readonly hostname: string;
  /** Port to bind; 0 picks a free one. */
  readonly port: number;
}

/** A bound TCP listener. */
export interface Listener {
  /** The address actually bound. */
  readonly hostname: string;
  /** The port actually bound. */
  readonly port: number;
  /** Stops accepting connections (open ones are left alone). */
  close(): Promise<void>;
}

/** Binds a listener and hands every accepted socket to `onConnection`. */
export type Listen = (
  options: ListenOptions,
  onConnection: (conn: ServerConnection) => void,
) => Promise<Listener>;
