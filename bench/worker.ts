/**
 * A worker process of bench/run.ts: runs the jobs given as JSON in its
 * first argument, in order, in the runtime it was started with, and prints
 * `RESULT <json array>` as its last line.
 *
 * @module
 */

import process from "node:process";
import { type Job, remoteMemory, RESULT_PREFIX } from "./jobs.ts";
import { runtimeName, runtimeVersion } from "./runtime.ts";
import {
  measureContention,
  measureHotKey,
  measureOverhead,
  measureServers,
  measureStateScale,
  measureThroughput,
} from "./workloads.ts";

/** Runs one job. */
export function runJob(job: Job): Promise<unknown> {
  switch (job.kind) {
    case "overhead":
      return measureOverhead(job.target, job.options);
    case "throughput":
      return measureThroughput(job.target, job.options);
    case "contention":
      return measureContention(job.target, job.options);
    case "state":
      return measureStateScale(
        job.target,
        () => remoteMemory(job.target.host, job.controlPort),
        job.options,
      );
    case "servers":
      return measureServers(job.targets, job.options);
    case "hotKey":
      return measureHotKey(job.targets, job.options);
  }
}

const jobs = JSON.parse(process.argv[2] ?? "[]") as Job[];
const results: unknown[] = [];
for (const job of jobs) results.push(await runJob(job));
process.stdout.write(
  `${RESULT_PREFIX}${
    JSON.stringify({ runtime: runtimeName(), version: runtimeVersion(), results })
  }\n`,
);
// Sockets of closed clients may linger a moment; the result is out.
process.exit(0);
