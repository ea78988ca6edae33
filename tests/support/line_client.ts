/**
 * A raw TCP line client for tests: sends lines, reads reply lines exactly as
 * the server wrote them (a trailing `\r` is kept). Uses `node:net`, which
 * Deno, Bun and Node all provide, so the server is tested over real TCP.
 *
 * @module
 */

import { connect, type Socket } from "node:net";

/** A test connection to an eLock server. */
export class LineClient implements AsyncDisposable {
  readonly socket: Socket;
  #buffer = "";
  #lines: string[] = [];
  #waiters: Array<() => void> = [];
  #ended = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      this.#buffer += chunk;
      let nl: number;
      while ((nl = this.#buffer.indexOf("\n")) !== -1) {
        this.#lines.push(this.#buffer.slice(0, nl));
        this.#buffer = this.#buffer.slice(nl + 1);
      }
      this.#wake();
    });
    const end = () => {
      this.#ended = true;
      this.#wake();
    };
    socket.on("end", end);
    socket.on("close", end);
    socket.on("error", end);
  }

  /** Opens a connection to `port` on `host` (default 127.0.0.1). */
  static connect(port: number, host = "127.0.0.1"): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host, noDelay: true }, () => {
        socket.off("error", reject);
        resolve(new LineClient(socket));
      });
      socket.once("error", reject);
    });
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Whether the server closed the connection. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Sends `line` followed by `\n`. */
  send(line: string): void {
    this.socket.write(line + "\n", "latin1");
  }

  /** Sends raw bytes or text as is. */
  write(data: Uint8Array | string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.write(data, (error) => error ? reject(error) : resolve())
    );
  }

  /**
   * The next reply line (without `\n`, with any `\r`); rejects if none
   * arrives within `timeoutMs` or the connection ends first.
   */
  async line(timeoutMs = 5000): Promise<string> {
    const line = await this.lineOrNull(timeoutMs);
    if (line === null) {
      throw new Error(this.#ended ? "connection ended" : `no line within ${timeoutMs} ms`);
    }
    return line;
  }

  /** The next reply line, or null if none arrives within `timeoutMs` or the connection ended. */
  async lineOrNull(timeoutMs: number): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.#lines.length === 0) {
      if (this.#ended) return null;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.#lines.shift()!;
  }

  /** Sends `line` and returns the first reply line. */
  async request(line: string, timeoutMs = 5000): Promise<string> {
    this.send(line);
    return await this.line(timeoutMs);
  }

  /** Resolves true once the server has closed the connection (within `timeoutMs`). */
  async waitEnd(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#ended && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.#ended;
  }

  /**
   * Closes the connection (FIN) and resolves once the socket is closed;
   * destroys it if the server does not close its side within 3 s. Leaves no
   * timer behind and works on a paused socket too.
   */
  close(): Promise<void> {
    const socket = this.socket;
    if (socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => socket.destroy(), 3000);
      socket.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      socket.resume();
      socket.end();
    });
  }

  /** Resets the connection (RST where the runtime can). */
  reset(): void {
    if (typeof this.socket.resetAndDestroy === "function") this.socket.resetAndDestroy();
    else this.socket.destroy();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
