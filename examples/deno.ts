/**
 * Deno: build a report under a lock, so that only one process at a time
 * does it. `withLock()` takes the lock (waiting up to 5 s), runs the
 * callback, and releases the lock however the callback ends.
 *
 * ```sh
 * ELOCK_PORT=11400 deno run --allow-net --allow-env examples/deno.ts
 * ```
 *
 * In your project, `deno add` the package `@x/elock` from JSR: it maps
 * `@x/elock` in your deno.json, so this import works as it is.
 *
 * @module
 */

import { ELockClient } from "@x/elock";

const host = Deno.env.get("ELOCK_HOST") ?? "127.0.0.1";
const port = Number(Deno.env.get("ELOCK_PORT") ?? 11400);

await using client = await ELockClient.connect({ host, port });
const report = await client.withLock("nightly-report", (lock) => {
  // ... only one process at a time gets here ...
  return `report built under ${lock.key}`;
}, { timeout: 5000 });
console.log(report);
