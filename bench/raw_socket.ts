/**
 * The baseline of the client-overhead measurement: a socket of the API the
 * client's default transport uses on this runtime (`Bun.connect` on Bun,
 * `node:net` on Node and Deno; `Deno.connect` for comparison), that writes command bytes and
 * waits for a number of reply lines (it counts `\n` bytes, nothing more).
 * No client code runs on this path.
 *
 * @module
 */

/** A connection that writes bytes and waits for reply lines. */
export interface RawConnection {
  /** Writes `bytes`, resolves once `lines` more reply lines have arrived. */
  roundTrip(bytes: Uint8Array, lines: number): Promise<void>;
  /** Closes the socket. */
  close(): void;
}

/** Which socket API a raw connection uses. */
export type RawKind = "deno" | "bun" | "node";

/**
 * The socket API of the client's default transport on the runtime this code
 * runs on: `Bun.connect` on Bun, `node:net` on Node and Deno.
 */
export function runtimeRawKind(): RawKind {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.Bun === "object" && g.Bun !== null) return "bun";
  return "node";
}

/** Opens a raw connection with the socket API of `kind` (default: this runtime's). */
export function connectRaw(
  host: string,
  port: number,
  kind: RawKind = runtimeRawKind(),
): Promise<RawConnection> {
  switch (kind) {
    case "deno":
      return connectDeno(host, port);
    case "bun":
      return connectBun(host, port);
    case "node":
      return connectNode(host, port);
  }
}

/** Counts newlines and wakes the waiter once enough have come. */
class LineCounter {
  #lines = 0;
  #need = 0;
  #wake: (() => void) | null = null;
  #fail: ((error: Error) => void) | null = null;
  #failure: Error | null = null;

  count(chunk: Uint8Array): void {
    let at = chunk.indexOf(10);
    while (at !== -1) {
      this.#lines++;
      at = chunk.indexOf(10, at + 1);
    }
    if (this.#wake !== null && this.#lines >= this.#need) {
      this.#lines -= this.#need;
      const wake = this.#wake;
      this.#wake = this.#fail = null;
      wake();
    }
  }

  wait(lines: number): Promise<void> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    if (this.#lines >= lines) {
      this.#lines -= lines;
      return Promise.resolve();
    }
    this.#need = lines;
    return new Promise<void>((resolve, reject) => {
      this.#wake = resolve;
      this.#fail = reject;
    });
  }

  fail(error: Error): void {
    this.#failure ??= error;
    const fail = this.#fail;
    this.#wake = this.#fail = null;
    fail?.(error);
  }
}

interface DenoConn {
  write(bytes: Uint8Array): Promise<number>;
  read(buffer: Uint8Array): Promise<number | null>;
  setNoDelay(noDelay?: boolean): void;
  close(): void;
}

async function connectDeno(host: string, port: number): Promise<RawConnection> {
  const deno = (globalThis as unknown as {
    Deno: { connect(o: { hostname: string; port: number }): Promise<DenoConn> };
  }).Deno;
  const conn = await deno.connect({ hostname: host, port });
  conn.setNoDelay(true);
  const buffer = new Uint8Array(64 * 1024);
  let lines = 0;
  return {
    async roundTrip(bytes, want) {
      let at = 0;
      while (at < bytes.length) at += await conn.write(bytes.subarray(at));
      while (lines < want) {
        const n = await conn.read(buffer);
        if (n === null) throw new Error("raw connection closed by the server");
        let nl = buffer.indexOf(10);
        while (nl !== -1 && nl < n) {
          lines++;
          nl = buffer.indexOf(10, nl + 1);
        }
      }
      lines -= want;
    },
    close() {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    },
  };
}

interface BunSocket {
  write(bytes: Uint8Array): number;
  setNoDelay(noDelay: boolean): void;
  end(): void;
}

async function connectBun(host: string, port: number): Promise<RawConnection> {
  const bun = (globalThis as unknown as {
    Bun: {
      connect(o: {
        hostname: string;
        port: number;
        socket: {
          data(s: BunSocket, chunk: Uint8Array): void;
          close(s: BunSocket): void;
          error(s: BunSocket, e: Error): void;
        };
      }): Promise<BunSocket>;
    };
  }).Bun;
  const counter = new LineCounter();
  const socket = await bun.connect({
    hostname: host,
    port,
    socket: {
      data: (_s, chunk) => counter.count(chunk),
      close: () => counter.fail(new Error("raw connection closed")),
      error: (_s, error) => counter.fail(error),
    },
  });
  socket.setNoDelay(true);
  return {
    roundTrip(bytes, want) {
      const done = counter.wait(want);
      if (socket.write(bytes) !== bytes.length) {
        throw new Error("raw connection: partial write (not expected for a command line)");
      }
      return done;
    },
    close: () => socket.end(),
  };
}

interface NodeSocket {
  on(event: "data", listener: (chunk: Uint8Array) => void): void;
  on(event: "close", listener: () => void): void;
  on(event: "error", listener: (error: Error) => void): void;
  once(event: "connect", listener: () => void): void;
  once(event: "error", listener: (error: Error) => void): void;
  off(event: "error", listener: (error: Error) => void): void;
  write(bytes: Uint8Array): boolean;
  destroy(): void;
}

/** `node:net`, named through a variable so no type checker needs Node's types. */
const NODE_NET = "node:net";

async function connectNode(host: string, port: number): Promise<RawConnection> {
  const net = (await import(NODE_NET)) as {
    connect(o: { host: string; port: number; noDelay: boolean }): NodeSocket;
  };
  const socket = net.connect({ host, port, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve();
    });
  });
  const counter = new LineCounter();
  socket.on("data", (chunk) => counter.count(chunk));
  socket.on("error", (error) => counter.fail(error));
  socket.on("close", () => counter.fail(new Error("raw connection closed")));
  return {
    roundTrip(bytes, want) {
      const done = counter.wait(want);
      socket.write(bytes);
      return done;
    },
    close: () => socket.destroy(),
  };
}
