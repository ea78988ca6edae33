/**
 * Bun: `bun add @x/elock`, then `ELOCK_PORT=11400 bun run bun.ts`. Bun
 * runs TypeScript as is and supports `await using`: at the end of the
 * scope the client releases its session's locks (`unlock_all`) and closes.
 *
 * @module
 */

import process from "node:process";
import { ELockClient } from "@x/elock";

await using client = await ELockClient.connect({
  host: process.env.ELOCK_HOST ?? "127.0.0.1",
  port: Number(process.env.ELOCK_PORT ?? 11400),
});
await using lock = await client.acquire("invoice-42", { timeout: 5000 });
console.log(`holding ${lock.key} from Bun ${process.versions.bun}`);
