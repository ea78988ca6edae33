/**
 * Client overhead: the client, the default transport's streams alone and a
 * raw socket, on one connection each, in turn.
 *
 * @module
 */

import { defaultTransport, ELockClient } from "../mod.ts";
import { encoder, figures, type LoopFigures, medianFigures, now, type Target } from "./measure.ts";
import { connectRaw } from "./raw_socket.ts";
import { median, percentileOf, round, Samples } from "./stats.ts";

/** Client vs raw on one connection each, interleaved rounds. */
export interface OverheadOptions {
  readonly rounds: number;
  readonly roundMs: number;
  readonly warmupMs: number;
}

/** What {@linkcode measureOverhead} found (medians over rounds). */
export interface OverheadFigures {
  readonly rounds: number;
  /** Through {@linkcode ELockClient}. */
  readonly client: LoopFigures;
  /**
   * The same bytes through the web streams of the client's default
   * transport, with no protocol or client code: the cost of the seam.
   */
  readonly transport: LoopFigures;
  /** The same bytes on a raw socket of the same API. */
  readonly raw: LoopFigures;
  /** Median over rounds of raw ops/s ÷ client ops/s (1 = no overhead). */
  readonly ratio: number;
  /** The 25th and 75th percentiles of the rounds' ratios: the spread of the noise. */
  readonly ratioP25: number;
  readonly ratioP75: number;
  /** Median over rounds of raw ops/s ÷ transport ops/s. */
  readonly transportRatio: number;
  /** The client/raw ratio of each round, in order. */
  readonly ratios: readonly number[];
}

/**
 * Sequential lock/unlock pairs through {@linkcode ELockClient}, through the
 * default transport's streams alone, and through a raw socket, writing the
 * same bytes; the three take turns in every round, in an order that
 * rotates, so that drift and noise hit them alike.
 */
export async function measureOverhead(
  target: Target,
  options: OverheadOptions,
): Promise<OverheadFigures> {
  const key = `overhead-${Math.random().toString(36).slice(2, 10)}`;
  const client = await ELockClient.connect({ host: target.host, port: target.port });
  const raw = await connectRaw(target.host, target.port);
  const streams = await defaultTransport().connect({ host: target.host, port: target.port });
  const reader = streams.readable.getReader();
  const writer = streams.writable.getWriter();
  try {
    const lock = encoder.encode(`lock ${key}\n`);
    const unlock = encoder.encode(`unlock ${key}\n`);
    const viaStreams = async (bytes: Uint8Array) => {
      await writer.write(bytes);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error("overhead: the transport's stream ended");
        if (value.includes(10)) return;
      }
    };
    type Step = (bytes: Uint8Array) => Promise<unknown>;
    const loops: Record<"client" | "transport" | "raw", Step> = {
      client: async (bytes) => {
        const ok = bytes === lock ? await client.lock(key) : await client.unlock(key);
        if (!ok) throw new Error(`overhead: ${key} refused`);
      },
      transport: viaStreams,
      raw: (bytes) => raw.roundTrip(bytes, 1),
    };
    const loop = async (step: Step, ms: number, samples: Samples | null) => {
      let ops = 0;
      const start = now();
      let end = start;
      do {
        const t0 = now();
        await step(lock);
        const t1 = now();
        await step(unlock);
        end = now();
        samples?.add(t1 - t0);
        samples?.add(end - t1);
        ops += 2;
      } while (end - start < ms);
      return ops / ((end - start) / 1000);
    };
    const names = ["client", "transport", "raw"] as const;
    for (const name of names) await loop(loops[name], options.warmupMs / names.length, null);
    const rounds: Record<(typeof names)[number], LoopFigures>[] = [];
    for (let r = 0; r < options.rounds; r++) {
      const order = names.map((_, i) => names[(i + r) % names.length]!);
      if (Math.floor(r / names.length) % 2 === 1) order.reverse();
      const round = {} as Record<(typeof names)[number], LoopFigures>;
      for (const name of order) {
        const samples = new Samples();
        round[name] = figures(await loop(loops[name], options.roundMs, samples), samples);
      }
      rounds.push(round);
    }
    const ratios = rounds.map((r) => r.raw.opsPerSec / r.client.opsPerSec);
    const sorted = [...ratios].sort((a, b) => a - b);
    return {
      rounds: rounds.length,
      client: medianFigures(rounds.map((r) => r.client)),
      transport: medianFigures(rounds.map((r) => r.transport)),
      raw: medianFigures(rounds.map((r) => r.raw)),
      ratio: round(median(ratios)),
      ratioP25: round(percentileOf(sorted, 25)),
      ratioP75: round(percentileOf(sorted, 75)),
      transportRatio: round(median(rounds.map((r) => r.raw.opsPerSec / r.transport.opsPerSec))),
      ratios: ratios.map((r) => round(r)),
    };
  } finally {
    raw.close();
    reader.releaseLock();
    writer.releaseLock();
    await streams.close();
    await client.close();
  }
}
