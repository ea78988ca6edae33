/**
 * A real TCP proxy in front of a real server, for fault injection: it can
 * record what clients send, stop forwarding replies (a server that went
 * silent), or cut every connection (a network that dropped).
 *
 * Runs on Node, Deno and Bun through `node:net`.
 *
 * @module
 */

import net from "node:net";

/** A proxy listening on 127.0.0.1. */
export interface Proxy {
  /** The proxy's port: connect clients here. */
  readonly port: number;
  /** Everything clients sent, per connection, as text. */
  readonly sent: string[];
  /** Stops forwarding the server's replies (they are dropped). */
  silence(): void;
  /** Destroys every connection, both sides. */
  cut(): void;
  /** Number of client connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts a proxy to `127.0.0.1:targetPort`. */
export async function startProxy(targetPort: number): Promise<Proxy> {
  const sockets = new Set<net.Socket>();
  const sent: string[] = [];
  let silent = false;
  let accepted = 0;
  const server = net.createServer((client) => {
    const index = accepted++;
    sent[index] = "";
    const upstream = net.connect({ host: "127.0.0.1", port: targetPort });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("data", (chunk: Uint8Array) => {
      sent[index] += new TextDecoder().decode(chunk);
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Uint8Array) => {
      if (!silent) client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const cut = () => {
    for (const socket of sockets) socket.destroy();
  };
  const close = async () => {
    cut();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return {
    port,
    sent,
    get accepted() {
      return accepted;
    },
    silence: () => void (silent = true),
    cut,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** A scripted server: answers each received line with `answer(line)` (or nothing). */
export async function startScriptedServer(
  answer: (line: string, write: (text: string) => void) => void,
): Promise<{ port: number; close(): Promise<void>; [Symbol.asyncDispose](): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    let buffered = "";
    socket.on("data", (chunk: Uint8Array) => {
      buffered += new TextDecoder().decode(chunk);
      let end: number;
      while ((end = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        answer(line, (text) => socket.write(text));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const close = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { port, close, [Symbol.asyncDispose]: close };
}
