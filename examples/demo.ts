/**
 * The demo: starts the bundled eLock server in-process on a free port and
 * shows, with the client, two clients contending, a wait that succeeds, a
 * deadlock caught as `DeadlockError`, value locks, `stats` and `debug`, over
 * real TCP. Run with `npm run demo`.
 *
 * @module
 */

import { DeadlockError, ELockClient } from "../mod.ts";
import { startServer } from "../src/server/mod.ts";

const say = (text: string) => console.log(text);

/** Resolves when the server reports a lock request for `key` waiting in its queue. */
const waitingFor = (key: string) => new Promise<void>((resolve) => waiters.set(key, resolve));
const waiters = new Map<string, () => void>();

await using server = await startServer({
  port: 0,
  dialect: "extended",
  onEvent: (event) => {
    if (event.type === "wait") waiters.get(event.key)?.();
  },
});
say(`eLock server (extended dialect) listening on 127.0.0.1:${server.port}\n`);

await using alice = await ELockClient.connect({ port: server.port, releaseTimeout: 0 });
await using bob = await ELockClient.connect({ port: server.port, releaseTimeout: 0 });
say(`alice is session ${await alice.sessionId()}, bob is session ${await bob.sessionId()}`);

say("\n# Two clients contending");
say(`alice: lock("invoice-42")            -> ${await alice.lock("invoice-42")}`);
say(`bob:   lock("invoice-42")            -> ${await bob.lock("invoice-42")}`);
say(`bob:   lock("invoice-42", 300 ms)    -> ${await bob.lock("invoice-42", { timeout: 300 })}`);

say("\n# A wait that succeeds");
const waiting = bob.lock("invoice-42", { timeout: 5000 });
say('bob:   lock("invoice-42", 5000 ms)   ... waiting');
setTimeout(() => {
  say('alice: unlock("invoice-42")');
  void alice.unlock("invoice-42");
}, 200);
say(`bob:   ... granted                   -> ${await waiting}`);
await bob.unlock("invoice-42");

say("\n# A deadlock, caught");
await alice.lock("ledger");
await bob.lock("journal");
const journalWait = waitingFor("journal");
const aliceWaits = alice.lock("journal", { timeout: 10_000 });
await journalWait;
say("alice: holds ledger, waits for journal");
try {
  say("bob:   holds journal, asks for ledger");
  await bob.lock("ledger", { timeout: 10_000 });
} catch (error) {
  if (!(error instanceof DeadlockError)) throw error;
  say(`bob:   DeadlockError: ${error.message}`);
  say(`       cycle: ${error.cycle.map((e) => `#${e.session} waits for ${e.key}`).join(", ")}`);
  await bob.unlock("journal");
}
say(`alice: ... got journal               -> ${await aliceWaits}`);
await alice.unlockAll();

say("\n# Value locks: readers share, a writer is kept out");
say(`alice: lockValue("schema", "read")   -> ${await alice.lockValue("schema", "read")}`);
say(`bob:   lockValue("schema", "read")   -> ${await bob.lockValue("schema", "read")}`);
await using carol = await ELockClient.connect({ port: server.port });
say(`carol: lockValue("schema", "write")  -> ${await carol.lockValue("schema", "write")}`);

say("\n# stats");
say(JSON.stringify(await carol.stats()));

say("\n# debug");
const info = await carol.debug();
for (const lock of info.locks) {
  say(
    `LOCK ${lock.key} held by ${lock.holders.map((h) => `#${h}`).join(", ")}` +
      (lock.value === null ? "" : ` with value ${lock.value}`),
  );
}
say(`${info.sessions.length} sessions, ${info.requests.length} waiting requests`);

say("\nDone: every client releases its locks and disconnects; the server stops.");
