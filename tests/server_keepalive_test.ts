/**
 * TCP keepalive on the bundled server's accepted sockets (`keepAlive`,
 * `--keepalive`): a connection whose peer vanished without a word is noticed
 * by the kernel's probes. Checked in the kernel's own table of sockets
 * (`/proc/net/tcp`, Linux): the server side of an idle connection runs the
 * keepalive timer, due within the configured idle time (Node and Bun set
 * it; `Deno.TcpConn.setKeepAlive` takes no delay, so on Deno the timer runs
 * with the system's idle time), and no timer with `keepAlive: 0`. Each
 * runtime's pass checks its own listener.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { readFileSync } from "node:fs";
import { startServer } from "../src/server/mod.ts";
import { until } from "./support/wait.ts";

/** The `/proc/net/tcp` row of the socket bound to 127.0.0.1:`local` talking to 127.0.0.1:`remote`. */
function tcpRow(local: number, remote: number): { timer: number; dueTicks: number } | null {
  const hex = (port: number) => `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] !== hex(local) || fields[2] !== hex(remote)) continue;
    const [timer, due] = fields[5]!.split(":");
    return { timer: parseInt(timer!, 16), dueTicks: parseInt(due!, 16) };
  }
  return null;
}

/** Connects to `port` and returns the server side's row once the server has accepted it. */
async function serverSide(port: number): Promise<{ timer: number; dueTicks: number }> {
  const socket = net.connect(port, "127.0.0.1");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    // One round trip: the server has accepted the socket and set its options.
    socket.write("conn_id\n");
    await new Promise<void>((resolve) => socket.once("data", () => resolve()));
    let row: { timer: number; dueTicks: number } | null = null;
    await until(() => (row = tcpRow(port, socket.localPort!)) !== null, "the server side in /proc");
    return row!;
  } finally {
    socket.destroy();
  }
}

const isDeno = "Deno" in globalThis;

test("an accepted socket runs the TCP keepalive timer, due within the idle time asked for", async () => {
  await using server = await startServer({ port: 0, keepAlive: 20_000 });
  const row = await serverSide(server.port);
  assert.equal(row.timer, 2, "the keepalive timer (2) runs on the server side");
  // The kernel counts in USER_HZ ticks (100 a second): at most 20 s away, not the system's 2 h.
  if (!isDeno) assert.ok(row.dueTicks <= 20 * 100, `due in ${row.dueTicks} ticks`);
});

test("keepAlive 0: no keepalive timer on accepted sockets", async () => {
  await using server = await startServer({ port: 0, keepAlive: 0 });
  const row = await serverSide(server.port);
  assert.equal(row.timer, 0, "no timer on an idle connection");
});

test("the default keepalive (60 s) is on", async () => {
  await using server = await startServer({ port: 0 });
  const row = await serverSide(server.port);
  assert.equal(row.timer, 2);
  if (!isDeno) assert.ok(row.dueTicks <= 60 * 100, `due in ${row.dueTicks} ticks`);
});
