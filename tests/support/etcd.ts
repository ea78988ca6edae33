/**
 * Real etcd members for tests: started on free loopback ports in temporary
 * folders, stopped by pid (SIGKILL, then reaped). etcd must be installed
 * (Debian `etcd-server`; `.ci/run` installs it): without it the test fails,
 * it does not skip.
 *
 * @module
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, openSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { sleep } from "./wait.ts";

/** The etcd binary: `ETCD_BIN`, else `etcd` on PATH. Throws a clear message when it is missing. */
export function etcdBinary(): string {
  const bin = process.env.ETCD_BIN ?? "etcd";
  const probe = spawnSync(bin, ["--version"], { encoding: "utf8" });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      `etcd is not installed (tried "${bin}"): these tests need a real etcd. ` +
        "Install it (Debian/Ubuntu: apt-get install -y etcd-server) or set ETCD_BIN.",
    );
  }
  return bin;
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** One etcd member. */
export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  child: ChildProcess | null;
}

/** A running etcd cluster of one or more members. */
export interface EtcdCluster extends AsyncDisposable {
  readonly members: readonly EtcdMember[];
  /** Client URLs of every member. */
  readonly endpoints: string[];
  /** SIGKILLs member `i` and waits until it is reaped. */
  kill(i: number): Promise<void>;
  /** Starts member `i` again on its data folder. */
  restart(i: number): Promise<void>;
  /** Kills every member and removes the folders. */
  stop(): Promise<void>;
}

/** Starts `size` etcd members (one cluster) and resolves once it answers with a quorum. */
export async function startEtcd(size = 1): Promise<EtcdCluster> {
  const bin = etcdBinary();
  const dir = mkdtempSync(join(tmpdir(), "elock-etcd-"));
  const members: EtcdMember[] = [];
  for (let i = 0; i < size; i++) {
    members.push({
      name: `m${i}`,
      clientUrl: `http://127.0.0.1:${await freePort()}`,
      peerUrl: `http://127.0.0.1:${await freePort()}`,
      child: null,
    });
  }
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(",");
  const launch = (m: EtcdMember, state: "new" | "existing") => {
    const log = openSync(join(dir, `${m.name}.log`), "a");
    m.child = spawn(bin, [
      "--name",
      m.name,
      "--data-dir",
      join(dir, m.name),
      "--listen-client-urls",
      m.clientUrl,
      "--advertise-client-urls",
      m.clientUrl,
      "--listen-peer-urls",
      m.peerUrl,
      "--initial-advertise-peer-urls",
      m.peerUrl,
      "--initial-cluster",
      initialCluster,
      "--initial-cluster-token",
      dir,
      "--initial-cluster-state",
      state,
    ], { stdio: ["ignore", log, log] });
  };
  const kill = async (i: number) => {
    const child = members[i]!.child;
    members[i]!.child = null;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    process.kill(child.pid!, "SIGKILL");
    await exited;
  };
  const stop = async () => {
    for (let i = 0; i < members.length; i++) await kill(i);
    rmSync(dir, { recursive: true, force: true });
  };
  for (const m of members) launch(m, "new");
  try {
    await healthy(members[0]!.clientUrl);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    members,
    endpoints: members.map((m) => m.clientUrl),
    kill,
    async restart(i) {
      launch(members[i]!, "existing");
      await healthy(members[i]!.clientUrl);
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** Waits (up to 30 s) until `url` answers `/health` with a quorum. */
export async function healthy(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url + "/health", { signal: AbortSignal.timeout(1000) });
      const j = await r.json() as { health?: string };
      if (j.health === "true") return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`etcd at ${url} did not become healthy`);
    await sleep(100);
  }
}
