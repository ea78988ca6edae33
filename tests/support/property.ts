/**
 * Settings shared by the property-based tests (fast-check).
 *
 * Each property runs a modest, fixed number of times so the suite stays
 * fast on two cores. fast-check draws a new seed on every run and prints
 * the seed and the path of a failing case; to replay that case, set
 * `ELOCK_FC_SEED` (and `ELOCK_FC_PATH`, optional) in the environment, e.g.
 *
 * ```sh
 * ELOCK_FC_SEED=1234 ELOCK_FC_PATH="5:2" ./node_modules/.bin/deno test -A tests/reply_reader_property_test.ts
 * ```
 *
 * `ELOCK_FC_RUNS=N` runs every property N times instead, to hunt longer.
 *
 * @module
 */

import process from "node:process";
import type { Parameters } from "fast-check";

/**
 * fast-check parameters: `numRuns` runs (or `ELOCK_FC_RUNS`), with the seed
 * and path from the environment when set (to replay a failure), and the
 * failing values in the error message.
 */
export function propertyParameters<T>(numRuns: number): Parameters<T> {
  const seed = process.env.ELOCK_FC_SEED;
  const path = process.env.ELOCK_FC_PATH;
  const runs = Number(process.env.ELOCK_FC_RUNS);
  return {
    numRuns: Number.isInteger(runs) && runs > 0 ? runs : numRuns,
    verbose: 1,
    ...(seed === undefined || seed === "" ? {} : { seed: Number(seed) }),
    ...(path === undefined || path === "" ? {} : { path }),
  };
}
