/**
 * Keeps the bench from rotting: runs every workload of bench/ for about a
 * second in this process (bundled server included), then checks that the
 * results are well-formed and that the tables and the chart render. It
 * asserts nothing about speed.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { renderChart } from "../bench/chart.ts";
import { type BenchResults, formatTables, problemsOf } from "../bench/results.ts";
import { runInProcess } from "../bench/suite.ts";

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
    ]
  ) {
    assert.ok(tables.includes(section), `the tables have "${section}"`);
  }
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
