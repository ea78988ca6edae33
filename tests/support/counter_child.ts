/**
 * A child process of the lock-truth tests (case 5d): ONE client, two
 * concurrent loops of `ELOCK_ROUNDS` `withLock("counter", increment)`, where
 * increment reads a number from the file `ELOCK_COUNTER_FILE`, sleeps a
 * little, and writes the number + 1. Connects to `ELOCK_PORT`. Prints `done`
 * and exits 0, or prints the error and exits 1.
 *
 * @module
 */

import { readFile, writeFile } from "node:fs/promises";
import process from "node:process";
import { ELockClient } from "../../mod.ts";

const port = Number(process.env.ELOCK_PORT);
const file = process.env.ELOCK_COUNTER_FILE!;
const rounds = Number(process.env.ELOCK_ROUNDS ?? 25);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function increment(): Promise<void> {
  const n = Number(await readFile(file, "utf8"));
  await sleep(Math.random() * 3);
  await writeFile(file, String(n + 1));
}

try {
  const client = await ELockClient.connect({ port });
  try {
    const loop = async () => {
      for (let i = 0; i < rounds; i++) {
        await client.withLock("counter", increment, { timeout: 60_000 });
      }
    };
    await Promise.all([loop(), loop()]);
  } finally {
    await client.close();
  }
  console.log("done");
} catch (error) {
  console.error(error);
  process.exitCode = 1;
}
