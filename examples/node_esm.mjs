// Node, ES modules: `npm install @x/elock`, then
//   ELOCK_PORT=11400 node node_esm.mjs
// withLock() takes the lock (waiting up to 5 s), runs the callback, and
// releases the lock however the callback ends.
import process from "node:process";
import { ELockClient, LockUnavailableError } from "@x/elock";

const client = await ELockClient.connect({
  host: process.env.ELOCK_HOST ?? "127.0.0.1",
  port: Number(process.env.ELOCK_PORT ?? 11400),
});
try {
  const total = await client.withLock("invoice-42", (lock) => {
    // ... only one process at a time gets here ...
    return `invoice total computed under ${lock.key}`;
  }, { timeout: 5000 });
  console.log(total);
} catch (error) {
  if (!(error instanceof LockUnavailableError)) throw error;
  console.log(`${error.key} stayed busy for 5 s`);
} finally {
  await client.close();
}
