/**
 * A `node:net` server on 127.0.0.1 that records how each client connection
 * ended: with end-of-stream (the client's FIN) or with a reset (RST, seen as
 * an `error` with code `ECONNRESET`). It answers what a client sends on
 * connect and on its way out (`conn_id`, `set_timeout`, `unlock_all`,
 * `quit`) like an extended server; a `lock` is answered only once the
 * client has ended its side, so that reply is in flight while the client
 * closes (a client that closed its socket rather than only its write side
 * answers it with a reset). It then closes its side too, unless told to
 * keep it open (a server that never does). Runs on Node, Deno and Bun.
 *
 * @module
 */

import net from "node:net";

/** How one accepted connection ended. */
export interface Ending {
  /** The client ended its side (end-of-stream). */
  readonly end: boolean;
  /** The connection was reset (`ECONNRESET`). */
  readonly reset: boolean;
  /** Codes of any other socket errors. */
  readonly errors: readonly string[];
  /** The lines the client sent. */
  readonly lines: readonly string[];
}

/** A recording server. */
export interface CloseRecorder {
  readonly port: number;
  /** Resolves with how the `index`th accepted connection ended, once it has closed. */
  ending(index?: number): Promise<Ending>;
  /** Resolves with what the `index`th accepted connection had seen when the client's end arrived. */
  ended(index?: number): Promise<Ending>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface Record {
  end: boolean;
  reset: boolean;
  errors: string[];
  lines: string[];
  closed: Promise<void>;
  ended: Promise<Ending>;
}

/** The reply to each line, or `null` for a `lock` (answered after the client's end). */
function reply(line: string): string | null {
  if (line === "conn_id") return "200 1\n";
  if (line.startsWith("set_timeout ")) return "200 OK\n";
  if (line === "unlock_all" || line === "quit") return "200 OK\n";
  if (line.startsWith("lock ")) return null;
  return "400 Unknown command\n";
}

/** What `record` has seen so far. */
function snapshot({ end, reset, errors, lines }: Record): Ending {
  return { end, reset, errors: [...errors], lines: [...lines] };
}

/**
 * Starts a recording server on a free loopback port. With `keepOpen`, it
 * never closes its side after the client's end (the test closes it).
 */
export async function startCloseRecorder(
  { keepOpen = false }: { keepOpen?: boolean } = {},
): Promise<CloseRecorder> {
  const records: Record[] = [];
  const waiters: Array<() => void> = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    let onClosed!: () => void;
    let onEnded!: (seen: Ending) => void;
    const record: Record = {
      end: false,
      reset: false,
      errors: [],
      lines: [],
      closed: new Promise<void>((resolve) => onClosed = resolve),
      ended: new Promise<Ending>((resolve) => onEnded = resolve),
    };
    records.push(record);
    for (const wake of waiters.splice(0)) wake();
    let deferred = "";
    let buffered = "";
    socket.on("data", (chunk: Uint8Array) => {
      buffered += new TextDecoder().decode(chunk);
      let at: number;
      while ((at = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, at).replace(/\r$/, "");
        buffered = buffered.slice(at + 1);
        record.lines.push(line);
        const text = reply(line);
        if (text === null) deferred += "200 Acquired\n";
        else socket.write(text);
      }
    });
    socket.on("end", () => {
      record.end = true;
      onEnded(snapshot(record));
      if (keepOpen) return;
      if (deferred === "") return void socket.end();
      // The replies held back go out after the client's FIN, and ours a
      // little later: a client that closed its socket (rather than only its
      // write side) answers them with a reset, which arrives first.
      socket.write(deferred);
      setTimeout(() => socket.end(), 50);
    });
    socket.on("error", (error: Error & { code?: string }) => {
      if (error.code === "ECONNRESET") record.reset = true;
      else record.errors.push(error.code ?? error.message);
    });
    socket.on("close", () => {
      sockets.delete(socket);
      onClosed();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const close = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  const accepted = async (index: number) => {
    while (records.length <= index) await new Promise<void>((wake) => waiters.push(wake));
    return records[index]!;
  };
  return {
    port,
    async ending(index = 0) {
      const record = await accepted(index);
      await record.closed;
      return snapshot(record);
    },
    async ended(index = 0) {
      return await (await accepted(index)).ended;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
