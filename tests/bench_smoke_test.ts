/**
 * Keeps the bench from rotting: runs every workload of bench/ for about a
 * second in this process (bundled server included), then checks that the
 * results are well-formed and that the tables and the chart render. It
 * asserts nothing about speed. Section 5 runs on the C load generator and
 * echo server when the machine's `cc` builds them, and on the JavaScript
 * load generator (as without a compiler) in a test of its own.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { renderChart } from "../bench/chart.ts";
import { buildNative, runLoadgen, startEcho } from "../bench/native.ts";
import { type BenchResults, formatTables, problemsOf } from "../bench/results.ts";
import {
  measureServerSection,
  parseRefs,
  serverRatios,
  type ServerSection,
} from "../bench/server_section.ts";
import { inProcessJsLoad, runInProcess } from "../bench/suite.ts";
import { ELockClient } from "../mod.ts";
import { startServer } from "../src/server/mod.ts";

/** One run of about a second, shared by the tests of this file. */
let smoke: Promise<BenchResults> | undefined;
const smokeResults = () => smoke ??= runInProcess("smoke");

test("the bench harness produces well-formed results, tables and a chart", {
  timeout: 60_000,
}, async () => {
  const results = await smokeResults();
  assert.deepEqual(problemsOf(results), []);
  assert.equal(results.mode, "smoke");
  assert.deepEqual(results.throughput.map((t) => t.clients), [1, 8, 8, 8]);
  assert.deepEqual(
    results.throughput.map((t) => [t.shared ?? false, t.api ?? "raw"]),
    [[false, "raw"], [false, "raw"], [true, "raw"], [true, "withLock"]],
  );
  assert.equal(results.stateScale[0]!.connections * results.stateScale[0]!.locksPerConnection, 200);
  const tables = formatTables(results);
  for (
    const section of [
      "1. Client overhead",
      "2. Throughput",
      "3. Contention",
      "4. State scale",
      "5. Server vs server",
      "one hot key",
      "ratios",
    ]
  ) {
    assert.ok(tables.includes(section), `the tables have "${section}"`);
  }
  assert.ok(tables.includes("RSS after"), "state scale reports RSS after all disconnect");
  assert.deepEqual(results.servers.map((c) => c.connections), [1, 4]);
  assert.equal(results.hotKey.waiters, 4);
  assert.deepEqual(results.hotKey.servers.map((s) => s.kind), ["bundled"]);
  // The C helpers when cc builds them, the JavaScript generator (and a note) when not.
  const built = await buildNative();
  built.tools?.dispose();
  assert.equal(results.serverGenerator, built.tools === null ? "js" : "c");
  assert.deepEqual(
    results.servers[0]!.servers.map((s) => s.kind),
    built.tools === null ? ["bundled"] : ["bundled", "echo"],
  );
  assert.equal(
    results.notes.some((n) => n.includes("JavaScript load generator")),
    built.tools === null,
  );
  const svg = await renderChart(results);
  assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.ok(svg.includes("Client overhead"), "the chart has its first panel");
  assert.ok(svg.trimEnd().endsWith("</svg>"));
});

test("problemsOf() finds a missing figure and a number that is not finite", async () => {
  const results = await smokeResults();
  const broken = {
    ...results,
    contention: { ...results.contention, grantsPerSec: Number.NaN },
    overhead: [],
  };
  assert.deepEqual(problemsOf(broken), [
    "overhead is empty",
    "contention.grantsPerSec is not a positive number: NaN",
  ]);
});

test("section 5 on the JavaScript load generator, as without a C compiler", {
  timeout: 60_000,
}, async () => {
  await using server = await startServer({ hostname: "127.0.0.1", port: 0 });
  const section = await measureServerSection(
    [{ host: "127.0.0.1", port: server.port, name: "here", kind: "bundled" }],
    { connections: [2], hotWaiters: 3, rounds: 1, roundMs: 50, warmupMs: 10 },
    null,
    inProcessJsLoad,
  );
  assert.equal(section.generator, "js");
  assert.equal(section.comparisons[0]!.connections, 2);
  assert.ok(section.comparisons[0]!.servers[0]!.opsPerSec > 0);
  assert.equal(section.hotKey.servers[0]!.waiters, 3);
  assert.ok(section.hotKey.servers[0]!.grantsPerSec > 0);
  // Every loop ended after its unlock: nothing is left locked.
  const monitor = await ELockClient.connect({ host: "127.0.0.1", port: server.port });
  try {
    assert.equal((await monitor.stats()).locks, 0);
  } finally {
    await monitor.close();
  }
});

test("without a compiler, buildNative() says so and builds nothing", async () => {
  const built = await buildNative({ cc: "/nonexistent/elock-bench-cc" });
  assert.equal(built.tools, null);
  assert.match(built.reason ?? "", /no C compiler|needs Linux/);
});

test(
  "the C echo server answers each line with 200 OK; the C load generator loads servers in turn",
  {
    timeout: 60_000,
  },
  async () => {
    const built = await buildNative();
    if (built.tools === null) {
      // No compiler here: the fallback is what runs (the test above), and the reason is given.
      assert.match(built.reason, /no C compiler|failed|needs Linux|not found/);
      return;
    }
    const echo = await startEcho(built.tools);
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = connect({ host: "127.0.0.1", port: echo.port });
        let text = "";
        socket.on("connect", () => socket.write("lock a\nunlock a\nstats\n"));
        socket.on("data", (chunk: Uint8Array) => {
          text += new TextDecoder().decode(chunk);
          if (text.split("\n").length > 3) {
            socket.destroy();
            resolve(text);
          }
        });
        socket.on("error", reject);
      });
      assert.equal(reply, "200 OK\n200 OK\n200 OK\n");
      await using server = await startServer({ hostname: "127.0.0.1", port: 0 });
      const targets = [
        { host: "127.0.0.1", port: echo.port },
        { host: "127.0.0.1", port: server.port },
      ];
      const rounds = await runLoadgen(built.tools, targets, {
        mode: "pairs",
        connections: 3,
        warmupMs: 10,
        roundMs: 40,
        rounds: 2,
      });
      // Every round loads each server once, the order rotating.
      assert.deepEqual(rounds.map((r) => [r.round, r.target]), [[0, 0], [0, 1], [1, 1], [1, 0]]);
      for (const r of rounds) {
        assert.equal(r.mode, "pairs");
        assert.equal(r.connections, 3);
        assert.ok(r.opsPerSec > 0 && r.p99Ms >= r.p50Ms && r.p50Ms > 0, JSON.stringify(r));
      }
      const [hot] = await runLoadgen(built.tools, [targets[1]!], {
        mode: "hot",
        connections: 3,
        warmupMs: 10,
        roundMs: 40,
        rounds: 1,
      });
      assert.ok(hot!.grantsPerSec! > 0 && hot!.handoffP50Ms! > 0, JSON.stringify(hot));
      // It leaves nothing locked: each round ends after every connection's unlock.
      const monitor = await ELockClient.connect({ host: "127.0.0.1", port: server.port });
      try {
        assert.equal((await monitor.stats()).locks, 0);
      } finally {
        await monitor.close();
      }
      await assert.rejects(
        runLoadgen(built.tools, [{ host: "127.0.0.1", port: 1 }], {
          mode: "pairs",
          connections: 1,
          warmupMs: 0,
          roundMs: 10,
          rounds: 1,
        }),
        /the C load generator failed: loadgen: 127\.0\.0\.1:1: connect/,
      );
    } finally {
      await echo.stop();
      built.tools.dispose();
    }
  },
);

test("--ref is parsed into reference servers; ratios compare against the faster one", () => {
  assert.deepEqual(parseRefs("erlang=127.0.0.1:11602,node=127.0.0.1:11601"), [
    { name: "erlang", host: "127.0.0.1", port: 11602, kind: "reference" },
    { name: "node", host: "127.0.0.1", port: 11601, kind: "reference" },
  ]);
  assert.deepEqual(parseRefs(undefined), []);
  assert.throws(() => parseRefs("node=127.0.0.1"), /NAME=HOST:PORT/);
  assert.throws(() => parseRefs("node=localhost:11601"), /IPv4/);
  const row = (name: string, kind: "bundled" | "reference" | "echo", opsPerSec: number) => ({
    name,
    kind,
    opsPerSec,
    p50Ms: 1,
    p99Ms: 2,
    rounds: 1,
    slowdown: 1,
  });
  const hot = (name: string, kind: "bundled" | "reference", grantsPerSec: number) => ({
    name,
    kind,
    grantsPerSec,
    handoffP50Ms: 0.1,
    handoffP99Ms: 0.2,
    rounds: 1,
    waiters: 16,
  });
  const section: Pick<ServerSection, "comparisons" | "hotKey"> = {
    comparisons: [{
      connections: 64,
      servers: [
        row("bun", "bundled", 120_000),
        row("erlang", "reference", 60_000),
        row("node", "reference", 80_000),
        row("echo", "echo", 160_000),
      ],
    }],
    hotKey: {
      waiters: 16,
      servers: [hot("bun", "bundled", 30_000), hot("node", "reference", 15_000)],
    },
  };
  assert.deepEqual(serverRatios(section), [
    {
      load: "pairs",
      connections: 64,
      server: "bun",
      vsReference: 1.5,
      reference: "node",
      vsEcho: 0.75,
    },
    { load: "hot", connections: 16, server: "bun", vsReference: 2, reference: "node" },
  ]);
});
