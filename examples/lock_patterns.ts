/**
 * Three ways to hold a lock for a piece of work, side by side: the PHP
 * client's `try`/`finally`, `await using` with `acquire()`, and
 * `withLock()`. Each waits up to 5 s and releases the lock however the work
 * ends. Connects to ELOCK_HOST:ELOCK_PORT (default 127.0.0.1:11400).
 *
 * ```sh
 * ELOCK_PORT=11400 deno run --allow-net --allow-env examples/lock_patterns.ts
 * ```
 *
 * @module
 */

import process from "node:process";
import { ELockClient } from "../mod.ts"; // in your project: "@x/elock"

const client = await ELockClient.connect({
  host: process.env.ELOCK_HOST ?? "127.0.0.1",
  port: Number(process.env.ELOCK_PORT ?? 11400),
});
try {
  // 1. As with the PHP client: lock() resolves false when the wait runs out.
  //    PHP: if ($client->lock('invoice-42', 5)) { try { ... } finally { $client->unlock('invoice-42'); } }
  if (await client.lock("invoice-42", { timeout: 5000 })) {
    try {
      console.log("try/finally: working on invoice-42");
    } finally {
      await client.unlock("invoice-42");
    }
  }

  // 2. await using: acquire() rejects with LockUnavailableError when the
  //    wait runs out; the lock is released at the end of the block.
  {
    await using lock = await client.acquire("invoice-42", { timeout: 5000 });
    console.log(`await using: working on ${lock.key}`);
  }

  // 3. withLock(): the lock is held while the callback runs; its result is
  //    returned.
  const total = await client.withLock("invoice-42", () => 42, { timeout: 5000 });
  console.log(`withLock: total ${total}`);
} finally {
  await client.close();
}
