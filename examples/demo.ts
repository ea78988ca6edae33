/**
 * The demo: starts the bundled eLock server in-process on a free port and
 * shows two clients contending, a wait that succeeds, a deadlock, value
 * locks, `stats` and `debug`, over real TCP. Run with `npm run demo`.
 *
 * @module
 */

import { connect, type Socket } from "node:net";
import { startServer } from "../src/server/mod.ts";

/** A bare line-protocol connection that prints what it sends and receives. */
class Conn {
  #lines: string[] = [];
  #wake: (() => void) | null = null;
  #buffer = "";

  constructor(readonly name: string, readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.#buffer += chunk;
      let nl: number;
      while ((nl = this.#buffer.indexOf("\n")) !== -1) {
        this.#lines.push(this.#buffer.slice(0, nl).replace(/\r$/, ""));
        this.#buffer = this.#buffer.slice(nl + 1);
      }
      this.#wake?.();
    });
  }

  static open(name: string, port: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: "127.0.0.1" }, () => resolve(new Conn(name, socket)));
      socket.once("error", reject);
    });
  }

  send(line: string): void {
    console.log(`${this.name} > ${line}`);
    this.socket.write(line + "\n");
  }

  async reply(): Promise<string> {
    while (this.#lines.length === 0) await new Promise<void>((r) => this.#wake = r);
    const line = this.#lines.shift()!;
    console.log(`${this.name} < ${line}`);
    return line;
  }

  async request(line: string): Promise<string> {
    this.send(line);
    const first = await this.reply();
    if (first === "200 STATS" || first === "200 DEBUG") {
      while (await this.reply() !== "END");
    }
    return first;
  }
}

await using server = await startServer({ port: 0, dialect: "extended", sequentialIds: true });
console.log(`bundled eLock server (${server.dialect}) on 127.0.0.1:${server.port}\n`);
const alice = await Conn.open("alice", server.port);
const bob = await Conn.open("bob", server.port);

console.log("-- two clients contend for one key");
await alice.request("lock report");
await bob.request("lock report");

console.log("\n-- bob waits up to 5 s; alice unlocks and bob gets it");
bob.send("lock report 5");
const granted = bob.reply();
await alice.request("unlock report");
await granted;

console.log("\n-- a deadlock is caught instead of hanging");
await alice.request("lock invoices");
alice.send("lock report 5");
await new Promise((r) => setTimeout(r, 100));
await bob.request("lock invoices 5");
await bob.request("unlock report");
await alice.reply();

console.log("\n-- value locks: readers share a key under one value");
await alice.request("lock_value config v1");
await bob.request("lock_value config v1");
await bob.request("lock_value schema v2");
await alice.request("lock_value schema v3");

console.log("\n-- stats and debug");
await alice.request("stats");
await alice.request("debug");

alice.socket.end();
bob.socket.end();
console.log("\ndemo finished");
