/**
 * Two bundled servers on one etcd cluster: the lock table lives in etcd, so
 * a client fails over from one server to the other with its lock. Starts
 * three etcd members (the `etcd` binary must be installed: Debian
 * `etcd-server`) on free loopback ports in a temporary folder, two servers
 * on them, locks through both, kills one server, and shows the client
 * resuming on the other with its lock.
 *
 * ```sh
 * deno run -A examples/ha.ts
 * ```
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { ELockClient } from "../mod.ts"; // in your project: "@x/elock"
import { startServer } from "../src/server/mod.ts"; // in your project: "@x/elock/server"

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });

// 1. Three etcd members, one cluster.
const dir = mkdtempSync(join(tmpdir(), "elock-ha-"));
const members: { name: string; client: string; peer: string }[] = [];
for (const name of ["m0", "m1", "m2"]) {
  members.push({
    name,
    client: `http://127.0.0.1:${await freePort()}`,
    peer: `http://127.0.0.1:${await freePort()}`,
  });
}
const cluster = members.map((m) => `${m.name}=${m.peer}`).join(",");
const etcd: ChildProcess[] = members.map((m) =>
  spawn(process.env.ETCD_BIN ?? "etcd", [
    ...["--name", m.name, "--data-dir", join(dir, m.name)],
    ...["--listen-client-urls", m.client, "--advertise-client-urls", m.client],
    ...["--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer],
    ...["--initial-cluster", cluster, "--initial-cluster-token", dir],
  ], { stdio: "ignore" })
);
const endpoints = members.map((m) => m.client);
try {
  for (let healthy = false; !healthy;) {
    await new Promise((r) => setTimeout(r, 200));
    healthy = await fetch(`${endpoints[0]}/health`).then((r) => r.json()).then(
      (j: { health?: string }) => j.health === "true",
      () => false,
    );
  }
  console.log(`etcd: ${endpoints.join(", ")}`);

  // 2. Two servers on that cluster: one lock table.
  const a = await startServer({ port: 0, store: "etcd", etcdEndpoints: endpoints });
  await using b = await startServer({ port: 0, store: "etcd", etcdEndpoints: endpoints });
  console.log(`servers: A on ${a.port}, B on ${b.port}`);

  // 3. A client on A (B is its second host) takes a lock; B refuses it to another client.
  await using client = await ELockClient.connect({
    hosts: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`],
    releaseTimeout: 10_000,
  });
  const lock = await client.acquire("invoice-42");
  await using other = await ELockClient.connect({ port: b.port });
  console.log(`another client gets invoice-42 through B: ${await other.lock("invoice-42")}`); // false

  // 4. A goes away; the client resumes on B with its lock.
  const resumed = new Promise((r) => client.addEventListener("resume", r, { once: true }));
  await a.close();
  await resumed;
  console.log(`client now on port ${client.port}, lock lost: ${lock.lost}`); // B's port, false
  await lock.release();
  console.log(`...and after the release: ${await other.lock("invoice-42")}`); // true
} finally {
  for (const child of etcd) child.kill("SIGKILL");
  await Promise.all(
    etcd.map((c) => c.exitCode ?? new Promise((r) => c.once("exit", r))),
  );
  rmSync(dir, { recursive: true, force: true });
}
