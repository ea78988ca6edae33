/**
 * The chart of a run (bench/results/*.svg), drawn by Vega's headless SVG
 * renderer: no DOM and no canvas needed, on Deno, Node and Bun.
 *
 * @module
 */

import { type GroupMark, parse, type Spec, View } from "vega";
import type { BenchResults } from "./results.ts";
import { serverLabel } from "./server_section.ts";

const WIDTH = 380;
const HEIGHT = 200;

interface Row {
  readonly group: string;
  readonly series: string;
  readonly value: number;
  readonly label: string;
}

/** Renders `results` as one SVG document. */
export async function renderChart(results: BenchResults): Promise<string> {
  const view = new View(parse(chartSpec(results)), { renderer: "none" });
  return await view.toSVG();
}

/** The Vega specification of the chart: six panels in two columns. */
export function chartSpec(results: BenchResults): Spec {
  const m = results.machine;
  const c = results.contention;
  const panels = [
    groupedBars(
      "1. Client overhead: time per call ÷ raw socket's (median of interleaved rounds; target ≤ 1.15)",
      results.overhead.flatMap((o) => [
        {
          group: o.runtime,
          series: "client",
          value: o.ratio,
          label: `${o.ratio.toFixed(3)}`,
        },
        {
          group: o.runtime,
          series: "transport streams only",
          value: o.transportRatio,
          label: `${o.transportRatio.toFixed(3)}`,
        },
      ]),
      "× raw",
      "~r",
    ),
    groupedBars(
      `2. Throughput, ${results.loadRuntime} clients on distinct keys: total ops/s (label: p99 ms)`,
      results.throughput.map((t) => ({
        group: t.shared
          ? `${t.clients} loops, 1 client${t.api === "withLock" ? ", withLock" : ""}`
          : `${t.clients} client${t.clients === 1 ? "" : "s"}`,
        series: "ops/s",
        value: t.opsPerSec,
        label: t.p99Ms.toFixed(2),
      })),
      "ops/s",
    ),
    groupedBars(
      `3. Contention, ${c.clients} clients on one key: hand-off ms (${
        Math.round(c.grantsPerSec)
      } grants/s)`,
      [
        {
          group: "p50",
          series: "hand-off",
          value: c.handoffP50Ms,
          label: c.handoffP50Ms.toFixed(3),
        },
        {
          group: "p99",
          series: "hand-off",
          value: c.handoffP99Ms,
          label: c.handoffP99Ms.toFixed(3),
        },
      ],
      "ms",
      "~r",
    ),
    groupedBars(
      "4. State scale: server bytes per lock / per connection (label: release ms)",
      results.stateScale.flatMap((s) => [
        {
          group: `${s.server} server`,
          series: "RSS per connection",
          value: Math.max(0, s.rssPerConnection),
          label: "",
        },
        {
          group: `${s.server} server`,
          series: "RSS per lock",
          value: Math.max(0, s.rssPerLock),
          label: `${Math.round(s.releaseMs)} ms`,
        },
      ]),
      "bytes",
    ),
    groupedBars(
      `5. Server vs server: lock/unlock pairs, ops/s (${
        results.serverGenerator === "c" ? "C" : "JavaScript"
      } load generator)`,
      results.servers.flatMap((cmp) =>
        cmp.servers.map((s) => ({
          group: `${cmp.connections} connection${cmp.connections === 1 ? "" : "s"}`,
          series: serverLabel(s),
          value: s.opsPerSec,
          label: "",
        }))
      ),
      "ops/s",
    ),
    groupedBars(
      `5. Server vs server: one hot key, ${results.hotKey.waiters} waiters, grants/s`,
      results.hotKey.servers.map((s) => ({
        group: serverLabel(s),
        series: "grants/s",
        value: s.grantsPerSec,
        label: Math.round(s.grantsPerSec).toLocaleString("en-US"),
      })),
      "grants/s",
    ),
  ];
  return {
    $schema: "https://vega.github.io/schema/vega/v6.json",
    background: "white",
    padding: 16,
    title: {
      text: `@x/elock bench (${results.mode}), ${results.date.slice(0, 10)}`,
      subtitle: [
        `${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}; load ${m.loadStart.toFixed(1)}–${
          m.loadEnd.toFixed(1)
        } (shared machine: compare ratios, not absolute numbers)`,
        `${Object.entries(results.runtimes).map(([k, v]) => `${k} ${v}`).join(", ")}; ` +
        `server of 1–4: ${results.referenceServer}`,
      ],
      anchor: "start",
      fontSize: 16,
      subtitleFontSize: 11,
      offset: 12,
    },
    layout: { columns: 2, padding: { row: 60, column: 110 }, bounds: "full", align: "each" },
    marks: panels,
  };
}

function groupedBars(
  title: string,
  rows: Row[],
  yTitle: string,
  yFormat = "~s",
): GroupMark {
  return {
    type: "group",
    title: { text: title, anchor: "start", fontSize: 12, offset: 8 },
    encode: { update: { width: { value: WIDTH }, height: { value: HEIGHT } } },
    signals: [{ name: "width", value: WIDTH }, { name: "height", value: HEIGHT }],
    data: [{ name: "rows", values: rows }],
    scales: [
      {
        name: "x",
        type: "band",
        domain: { data: "rows", field: "group" },
        range: "width",
        padding: 0.2,
      },
      {
        name: "y",
        type: "linear",
        domain: { data: "rows", field: "value" },
        range: "height",
        nice: true,
        zero: true,
      },
      {
        name: "color",
        type: "ordinal",
        domain: { data: "rows", field: "series" },
        range: ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d"],
      },
    ],
    axes: [
      { orient: "bottom", scale: "x" },
      { orient: "left", scale: "y", title: yTitle, grid: true, format: yFormat },
    ],
    legends: [{ fill: "color", orient: "right", labelLimit: 220 }],
    marks: [{
      type: "group",
      from: { facet: { data: "rows", name: "facet", groupby: "group" } },
      encode: { enter: { x: { scale: "x", field: "group" } } },
      signals: [{ name: "width", update: "bandwidth('x')" }],
      scales: [{
        name: "pos",
        type: "band",
        range: "width",
        domain: { data: "facet", field: "series" },
        padding: 0.05,
      }],
      marks: [
        {
          type: "rect",
          from: { data: "facet" },
          encode: {
            enter: {
              x: { scale: "pos", field: "series" },
              width: { scale: "pos", band: 1 },
              y: { scale: "y", field: "value" },
              y2: { scale: "y", value: 0 },
              fill: { scale: "color", field: "series" },
            },
          },
        },
        {
          type: "text",
          from: { data: "facet" },
          encode: {
            enter: {
              x: { scale: "pos", field: "series", band: 0.5 },
              y: { scale: "y", field: "value", offset: -4 },
              text: { field: "label" },
              align: { value: "center" },
              fontSize: { value: 10 },
              fill: { value: "#333" },
            },
          },
        },
      ],
    }],
  };
}
