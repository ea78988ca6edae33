/**
 * `deno task bench:etcd [--quick]`: the bundled server on its etcd store,
 * measured side by side in one run with the same server on its memory
 * store and with the `etcd3` package's own `Lock` recipe on the same etcd
 * (the anchor a user would pick instead of eLock). Everything on loopback:
 * one etcd member started here in a temporary folder (the Debian
 * `etcd-server`), each bundled server an `elock server` process on Deno.
 *
 * Figures, as medians of interleaved rounds:
 *
 * - lock/unlock pairs per second on distinct keys, with 1 and with 64
 *   connections (eLock: one `ELockClient` per connection, raw
 *   `lock`/`unlock`; etcd3: one `Etcd3` client, as many concurrent loops of
 *   `lock(key).acquire()` and `release()`);
 * - grants per second on one hot key with 8 waiting connections (eLock
 *   only: etcd3's `Lock` does not wait, it fails when the key is held), and
 *   the hand-off interval in etcd round trips (the median time of one etcd
 *   write through the same gateway the store uses).
 *
 * Prints the tables and writes bench/results/etcd.json (or etcd-quick.json).
 *
 * @module
 */

import { Etcd3 } from "etcd3";
import { writeFileSync } from "node:fs";
import os from "node:os";
import { ELockClient } from "../mod.ts";
import { type EtcdCluster, startEtcd } from "../tests/support/etcd.ts";
import { median, round } from "./stats.ts";

const QUICK = Deno.args.includes("--quick");
const ROUNDS = QUICK ? 1 : 3;
const ROUND_MS = QUICK ? 1000 : 4000;
const CONNECTIONS = [1, 64];
const HOT_WAITERS = 8;
const HOST = "127.0.0.1";

/** An `elock server` process. */
interface ServerProcess {
  readonly port: number;
  stop(): Promise<void>;
}

async function startServerProcess(args: string[]): Promise<ServerProcess> {
  const child = new Deno.Command("node_modules/.bin/deno", {
    args: ["run", "-A", "src/cli.ts", "server", "--port", "0", ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`elock server ended before listening:\n${text}`);
    text += value;
    const match = /listening on 127\.0\.0\.1:(\d+)/.exec(text);
    if (match) {
      // Keep draining stderr so the child never blocks on it.
      void (async () => {
        while (!(await reader.read()).done);
      })().catch(() => {});
      return {
        port: Number(match[1]),
        async stop() {
          child.kill("SIGKILL");
          await child.status;
        },
      };
    }
  }
}

/** Loops of `once()` on `loops` concurrent workers for `ms`: completed loops per second. */
async function rate(
  loops: number,
  ms: number,
  once: (i: number) => Promise<void>,
): Promise<number> {
  let count = 0;
  const stopAt = performance.now() + ms;
  const start = performance.now();
  await Promise.all(Array.from({ length: loops }, async (_, i) => {
    while (performance.now() < stopAt) {
      await once(i);
      count++;
    }
  }));
  return count / ((performance.now() - start) / 1000);
}

/** Lock/unlock pairs per second through an eLock server, one client per connection. */
async function elockPairs(port: number, connections: number, ms: number): Promise<number> {
  const clients = await Promise.all(
    Array.from({ length: connections }, () => ELockClient.connect({ host: HOST, port })),
  );
  try {
    const tag = crypto.randomUUID().slice(0, 8);
    return await rate(connections, ms, async (i) => {
      const key = `pair-${tag}-${i}`;
      if (!(await clients[i]!.lock(key))) throw new Error(`${key} not granted`);
      await clients[i]!.unlock(key);
    });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** Grants per second on one key that `waiters` connections take in turn. */
async function elockHotKey(port: number, waiters: number, ms: number): Promise<number> {
  const clients = await Promise.all(
    Array.from({ length: waiters }, () => ELockClient.connect({ host: HOST, port })),
  );
  try {
    const key = `hot-${crypto.randomUUID().slice(0, 8)}`;
    return await rate(waiters, ms, async (i) => {
      if (!(await clients[i]!.lock(key, { timeout: 60_000 }))) throw new Error("not granted");
      await clients[i]!.unlock(key);
    });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** etcd3's `Lock` recipe: acquire/release pairs per second on distinct keys. */
async function etcd3Pairs(client: Etcd3, loops: number, ms: number): Promise<number> {
  const tag = crypto.randomUUID().slice(0, 8);
  return await rate(loops, ms, async (i) => {
    const lock = client.lock(`etcd3-${tag}-${i}`);
    await lock.acquire();
    await lock.release();
  });
}

/** The median time of one etcd write through the JSON gateway (what the store pays per round trip). */
async function etcdRoundTripMs(endpoint: string, samples: number): Promise<number> {
  const times: number[] = [];
  const body = JSON.stringify({ key: btoa("bench-rtt"), value: btoa("x") });
  for (let i = 0; i < samples; i++) {
    const start = performance.now();
    const response = await fetch(`${endpoint}/v3/kv/put`, { method: "POST", body });
    await response.arrayBuffer();
    times.push(performance.now() - start);
  }
  return median(times);
}

interface Row {
  readonly what: string;
  readonly memory: number;
  readonly etcd: number;
  readonly etcd3: number | null;
}

async function main(): Promise<void> {
  let etcd: EtcdCluster | null = null;
  const servers: ServerProcess[] = [];
  let etcd3: Etcd3 | null = null;
  try {
    etcd = await startEtcd();
    const endpoint = etcd.endpoints[0]!;
    const memory = await startServerProcess([]);
    servers.push(memory);
    const onEtcd = await startServerProcess([
      ...["--store", "etcd", "--etcd-endpoints", etcd.endpoints.join(",")],
    ]);
    servers.push(onEtcd);
    etcd3 = new Etcd3({ hosts: endpoint });

    // Warm-up: every path once, briefly.
    await elockPairs(memory.port, 4, 300);
    await elockPairs(onEtcd.port, 4, 300);
    await etcd3Pairs(etcd3, 4, 300);

    const samples: Record<string, number[]> = {};
    const add = (name: string, value: number) => (samples[name] ??= []).push(value);
    for (let r = 0; r < ROUNDS; r++) {
      for (const n of CONNECTIONS) {
        add(`pairs ${n} memory`, await elockPairs(memory.port, n, ROUND_MS));
        add(`pairs ${n} etcd`, await elockPairs(onEtcd.port, n, ROUND_MS));
        add(`pairs ${n} etcd3`, await etcd3Pairs(etcd3, n, ROUND_MS));
      }
      add("hot memory", await elockHotKey(memory.port, HOT_WAITERS, ROUND_MS));
      add("hot etcd", await elockHotKey(onEtcd.port, HOT_WAITERS, ROUND_MS));
      add("rtt", await etcdRoundTripMs(endpoint, 50));
    }
    const m = (name: string) => median(samples[name]!);
    const rows: Row[] = [
      ...CONNECTIONS.map((n) => ({
        what: `lock/unlock pairs/s, ${n} connection${n === 1 ? "" : "s"}`,
        memory: m(`pairs ${n} memory`),
        etcd: m(`pairs ${n} etcd`),
        etcd3: m(`pairs ${n} etcd3`),
      })),
      {
        what: `hot key grants/s, ${HOT_WAITERS} waiters`,
        memory: m("hot memory"),
        etcd: m("hot etcd"),
        etcd3: null,
      },
    ];
    const rtt = m("rtt");
    const handOffMs = 1000 / m("hot etcd");
    const lines = [
      `# bench:etcd (${new Date().toISOString()}, ${os.cpus().length} cores, ` +
      `${
        os.cpus()[0]?.model ?? "?"
      }, Deno ${Deno.version.deno}; ${ROUNDS} rounds of ${ROUND_MS} ms)`,
      "",
      "| measure | memory store | etcd store | etcd3 Lock | etcd store ÷ etcd3 |",
      "| --- | ---: | ---: | ---: | ---: |",
      ...rows.map((row) =>
        `| ${row.what} | ${Math.round(row.memory)} | ${Math.round(row.etcd)} | ` +
        `${row.etcd3 === null ? "n/a" : Math.round(row.etcd3)} | ` +
        `${row.etcd3 === null ? "n/a" : `${round(row.etcd / row.etcd3, 2)} ×`} |`
      ),
      "",
      `etcd write round trip (JSON gateway): ${round(rtt, 2)} ms; hot-key hand-off on the etcd ` +
      `store: ${round(handOffMs, 2)} ms = ${round(handOffMs / rtt, 2)} etcd round trips`,
    ];
    console.log(lines.join("\n"));
    const out = QUICK ? "bench/results/etcd-quick.json" : "bench/results/etcd.json";
    writeFileSync(
      out,
      JSON.stringify(
        {
          date: new Date().toISOString(),
          machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, deno: Deno.version.deno },
          rounds: ROUNDS,
          roundMs: ROUND_MS,
          rows,
          etcdRoundTripMs: rtt,
          handOffRoundTrips: handOffMs / rtt,
          samples,
        },
        null,
        2,
      ) + "\n",
    );
    console.log(`wrote ${out}`);
  } finally {
    etcd3?.close();
    await Promise.all(servers.map((s) => s.stop()));
    await etcd?.stop();
  }
}

await main();
