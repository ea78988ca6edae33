/**
 * What bench/run.ts asks a worker process to measure, and how a worker
 * reports: one line `RESULT <json>` on standard output.
 *
 * @module
 */

import { createConnection } from "node:net";
import {
  type ContentionOptions,
  type HotKeyOptions,
  type MemorySample,
  type OverheadOptions,
  type ServerLoadOptions,
  type StateScaleOptions,
  type Target,
  type ThroughputOptions,
} from "./workloads.ts";

/** One measurement for a worker. */
export type Job =
  | { readonly kind: "overhead"; readonly target: Target; readonly options: OverheadOptions }
  | { readonly kind: "throughput"; readonly target: Target; readonly options: ThroughputOptions }
  | { readonly kind: "contention"; readonly target: Target; readonly options: ContentionOptions }
  | {
    readonly kind: "state";
    readonly target: Target;
    /** The control port of bench/server.ts, for the server's memory. */
    readonly controlPort: number;
    readonly options: StateScaleOptions;
  }
  | {
    readonly kind: "servers";
    readonly targets: readonly (Target & { readonly name: string })[];
    readonly options: ServerLoadOptions;
  }
  | {
    readonly kind: "hotKey";
    readonly targets: readonly (Target & { readonly name: string })[];
    readonly options: HotKeyOptions;
  };

/** The line prefix of a worker's result. */
export const RESULT_PREFIX = "RESULT ";

/** Asks bench/server.ts at `host:controlPort` for its process's memory. */
export function remoteMemory(host: string, controlPort: number): Promise<MemorySample> {
  return new Promise<MemorySample>((resolve, reject) => {
    const socket = createConnection({ host, port: controlPort });
    let text = "";
    socket.on("connect", () => socket.write("mem\n"));
    socket.on("data", (chunk: Uint8Array) => {
      text += new TextDecoder().decode(chunk);
      const nl = text.indexOf("\n");
      if (nl === -1) return;
      socket.destroy();
      try {
        resolve(JSON.parse(text.slice(0, nl)) as MemorySample);
      } catch (error) {
        reject(error);
      }
    });
    socket.on("error", reject);
    socket.on("close", () => reject(new Error("control connection closed without an answer")));
  });
}
