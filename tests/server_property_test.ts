/**
 * A property-based test over real TCP (fast-check): random commands from a
 * few clients of the bundled (extended) server, with random disconnects and
 * quits, give the answers a model of the lock rules predicts, the server's
 * `debug` view matches the model after every step (so no key is ever held
 * exclusively by two sessions, and a value lock has one value), and once
 * every client has gone the server holds nothing.
 *
 * Locks are tried without waiting, so each answer is determined by the
 * commands before it, except `waitThenDisconnect`: a client waits for a key
 * another holds, and drops its connection while it waits (its wait must
 * leave the queue, and its locks go). The clients use release timeout 0,
 * and the test waits for the server's own events (a wait queued, a
 * disconnect seen), so a disconnect's release is part of the sequence too.
 * A handful of runs: each starts a server. Wait deadlines and resumes are
 * covered at the lock-table level (tests/lock_table_property_test.ts).
 *
 * Seeds: see tests/support/property.ts.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ConnectionClosedError, ELockClient, UnexpectedResponseError } from "../mod.ts";
import { type ServerEvent, startServer } from "../src/server/mod.ts";
import { propertyParameters } from "./support/property.ts";
import { until } from "./support/wait.ts";

type Command =
  | { t: "lock"; c: number; key: string }
  | { t: "lockValue"; c: number; key: string; value: string }
  | { t: "unlock"; c: number; key: string }
  | { t: "unlockAll"; c: number }
  | { t: "disconnect"; c: number }
  | { t: "quit"; c: number }
  | { t: "waitThenDisconnect"; c: number; key: string };

const CLIENTS = 3;
const slot = fc.nat(CLIENTS - 1);
const key = fc.constantFrom("a", "b", "c");
const command: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant("lock" as const), c: slot, key }), weight: 4 },
  {
    arbitrary: fc.record({
      t: fc.constant("lockValue" as const),
      c: slot,
      key,
      value: fc.constantFrom("x", "y"),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ t: fc.constant("unlock" as const), c: slot, key }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant("unlockAll" as const), c: slot }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("disconnect" as const), c: slot }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("quit" as const), c: slot }), weight: 1 },
  {
    arbitrary: fc.record({ t: fc.constant("waitThenDisconnect" as const), c: slot, key }),
    weight: 3,
  },
);

/** The model: who holds each key, and with which value (`null`: exclusively). */
type Model = Map<string, { value: string | null; holders: Set<string> }>;

/** What `lock`/`lockValue` must answer, and the model after it. */
function modelLock(model: Model, id: string, k: string, value: string | null): boolean | "error" {
  const state = model.get(k);
  if (state === undefined) {
    model.set(k, { value, holders: new Set([id]) });
    return true;
  }
  if (state.value === null || value === null) {
    // Exclusive against value (either way): the server answers 500.
    if (state.value !== value) return "error";
    return state.holders.has(id);
  }
  if (state.value !== value) return false;
  state.holders.add(id);
  return true;
}

function modelUnlock(model: Model, id: string, k: string): boolean {
  const state = model.get(k);
  if (state === undefined) return true; // "200 Lock released" for a key nobody holds
  if (!state.holders.has(id)) return false;
  state.holders.delete(id);
  if (state.holders.size === 0) model.delete(k);
  return true;
}

function modelRelease(model: Model, id: string): void {
  for (const k of [...model.keys()]) {
    if (model.get(k)!.holders.has(id)) modelUnlock(model, id, k);
  }
}

/** The model as `debug` shows it. */
function modelView(model: Model) {
  return [...model].map(([k, s]) => ({ key: k, holders: [...s.holders].sort(), value: s.value }))
    .sort((x, y) => x.key.localeCompare(y.key));
}

async function outcome(call: Promise<boolean | void>): Promise<boolean | "error"> {
  try {
    return (await call) ?? true;
  } catch (error) {
    if (error instanceof UnexpectedResponseError) return "error";
    throw error;
  }
}

test(
  "bundled server over TCP: random commands and disconnects follow the model, and end with nothing held",
  {
    timeout: 120_000,
  },
  async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 10, maxLength: 30 }), async (commands) => {
        const events: ServerEvent[] = [];
        await using server = await startServer({
          port: 0,
          dialect: "extended",
          sequentialIds: true,
          onEvent: (e) => events.push(e),
        });
        const clients: Array<{ client: ELockClient; id: string } | null> = [];
        const model: Model = new Map();
        await using observer = await ELockClient.connect({ port: server.port });
        const observerId = await observer.sessionId();
        /** The client of slot `c`, connecting a new session if it has none. */
        const clientOf = async (c: number) => {
          const open = clients[c];
          if (open) return open;
          const client = await ELockClient.connect({ port: server.port, releaseTimeout: 0 });
          const entry = { client, id: await client.sessionId() };
          clients[c] = entry;
          return entry;
        };
        const gone = (id: string) =>
          until(
            () => events.some((e) => e.type === "disconnect" && e.session === id),
            `the server to see #${id} disconnect`,
            30_000,
          );
        try {
          for (const [step, cmd] of commands.entries()) {
            const { client, id } = await clientOf(cmd.c);
            const what = `step ${step}: #${id} ${JSON.stringify(cmd)}`;
            switch (cmd.t) {
              case "lock":
                assert.equal(
                  await outcome(client.lock(cmd.key)),
                  modelLock(model, id, cmd.key, null),
                  what,
                );
                break;
              case "lockValue":
                assert.equal(
                  await outcome(client.lockValue(cmd.key, cmd.value)),
                  modelLock(model, id, cmd.key, cmd.value),
                  what,
                );
                break;
              case "unlock":
                assert.equal(await client.unlock(cmd.key), modelUnlock(model, id, cmd.key), what);
                break;
              case "unlockAll":
                await client.unlockAll();
                modelRelease(model, id);
                break;
              case "waitThenDisconnect": {
                const state = model.get(cmd.key);
                if (state?.value !== null || state.holders.has(id)) break; // it would not wait
                const waits = events.filter((e) => e.type === "wait" && e.session === id).length;
                const waiting = assert.rejects(
                  client.lock(cmd.key, { timeout: 60_000 }),
                  ConnectionClosedError,
                );
                await until(
                  () => events.filter((e) => e.type === "wait" && e.session === id).length > waits,
                  `#${id} to wait for ${cmd.key}`,
                  30_000,
                );
                await client.close();
                await waiting;
                clients[cmd.c] = null;
                await gone(id);
                modelRelease(model, id);
                break;
              }
              case "disconnect":
              case "quit":
                if (cmd.t === "quit") await client.quit();
                else await client.close();
                clients[cmd.c] = null;
                await gone(id);
                modelRelease(model, id);
                break;
            }
            const view = await observer.debug();
            const locks = view.locks.map((l) => ({ ...l, holders: [...l.holders].sort() }))
              .sort((x, y) => x.key.localeCompare(y.key));
            assert.deepEqual(locks, modelView(model), `${what}: the server's locks`);
            assert.deepEqual(view.requests, [], `${what}: nobody waits`);
          }
        } finally {
          for (const entry of clients) {
            if (!entry) continue;
            await entry.client.close();
            await gone(entry.id);
          }
        }
        assert.deepEqual(await observer.stats(), { clients: 1, locks: 0, monitoring: 1 });
        const view = await observer.debug();
        assert.deepEqual(view.locks, []);
        assert.deepEqual((view.sessions as Array<{ id: unknown }>).map((s) => String(s.id)), [
          observerId,
        ]);
      }),
      propertyParameters(20),
    );
  },
);
