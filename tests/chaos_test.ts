/**
 * Mutual exclusion under chaos: 8 clients each run 200 critical sections on
 * one key through a fault proxy that drops, resets, stalls and cuts their
 * connections at random. Each section records when it entered and left (a
 * sequence number: every client runs in this process, so the order is
 * exact). No two sections whose locks were not reported lost may overlap,
 * and every client must finish. Run with `ELOCK_TEST_SEED=N` to repeat a run.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectionClosedError,
  type ELockClient,
  type HeldLock,
  LockUnavailableError,
} from "../mod.ts";
import { DIALECTS, withServer } from "./support/client_server.ts";
import { startProxy } from "./support/proxy.ts";
import { random } from "./support/random.ts";
import { sleep, until } from "./support/wait.ts";

const CLIENTS = 8;
const SECTIONS = 200;

interface Section {
  readonly client: number;
  readonly enter: number;
  exit: number;
  lost: boolean;
}

for (const dialect of DIALECTS) {
  test(
    `[${dialect}] mutual exclusion under chaos: ${CLIENTS} clients x ${SECTIONS} critical sections through a faulty proxy`,
    {
      timeout: 600_000,
    },
    async () => {
      const rng = random();
      const seed = `(ELOCK_TEST_SEED=${rng.seed})`;
      await withServer(dialect, async ({ connect, port }) => {
        await using proxy = await startProxy(port);
        const clients = await Promise.all(
          Array.from({ length: CLIENTS }, () =>
            connect({
              port: proxy.port,
              releaseTimeout: 15_000,
              commandTimeout: 400,
              reconnect: { initialDelay: 10, maxDelay: 200 },
            })),
        );
        let resumes = 0;
        let lostSessions = 0;
        for (const client of clients) {
          client.addEventListener("resume", () => resumes++);
          client.addEventListener("sessionlost", () => lostSessions++);
        }

        let seq = 0;
        const log: Section[] = [];
        let running = true;
        const faults: Record<string, number> = {};
        const chaos = (async () => {
          while (running) {
            await sleep(rng.int(5, 60));
            const open = proxy.openIndexes;
            if (open.length === 0) continue;
            const index = rng.pick(open);
            const fault = rng.pick(["cut", "reset", "drop", "stall", "cutMidReply"] as const);
            faults[fault] = (faults[fault] ?? 0) + 1;
            if (fault === "stall") {
              proxy.stall(index);
              // Some stalls outlast the command timeout, some do not.
              await sleep(rng.int(50, 700));
              proxy.unstall(index);
            } else proxy[fault](index);
          }
        })();

        const worker = async (client: ELockClient, id: number) => {
          let done = 0;
          let failures = 0;
          while (done < SECTIONS) {
            let lock: HeldLock;
            try {
              lock = await client.acquire("hot", { timeout: 20_000 });
            } catch (error) {
              if (
                !(error instanceof ConnectionClosedError || error instanceof LockUnavailableError)
              ) {
                throw error;
              }
              if (++failures > 1000) throw new Error(`client ${id} cannot get the lock ${seed}`);
              continue;
            }
            const section: Section = { client: id, enter: seq++, exit: -1, lost: false };
            log.push(section);
            if (rng.next() < 0.5) await sleep(rng.int(0, 2));
            else await Promise.resolve();
            section.lost = lock.lost;
            section.exit = seq++;
            try {
              await lock.release();
            } catch (error) {
              // The reply was lost; the client releases the key after reconnecting.
              if (!(error instanceof ConnectionClosedError)) throw error;
            }
            done++;
          }
          return done;
        };
        let finished: number[];
        try {
          finished = await Promise.all(clients.map(worker));
        } finally {
          running = false;
          await chaos;
        }

        assert.deepEqual(finished, Array(CLIENTS).fill(SECTIONS), `every client finished ${seed}`);
        const protectedSections = log.filter((s) => !s.lost).sort((a, b) => a.enter - b.enter);
        for (let i = 1; i < protectedSections.length; i++) {
          const before = protectedSections[i - 1]!;
          const section = protectedSections[i]!;
          assert.ok(
            section.enter > before.exit,
            `client ${section.client} entered at ${section.enter} while client ${before.client} ` +
              `held the lock (${before.enter}..${before.exit}) ${seed}`,
          );
        }
        const injected = Object.values(faults).reduce((a, b) => a + b, 0);
        assert.ok(injected > 0 && resumes > 0, `the chaos happened ${seed}`);
        // Every lock is released in the end, late releases included.
        const observer = await connect();
        await until(async () => (await observer.stats()).locks === 0, "every lock released");
        console.log(
          `[${dialect}] ${log.length} sections, ${protectedSections.length} protected; ` +
            `faults ${
              JSON.stringify(faults)
            }; ${resumes} resumes, ${lostSessions} sessions lost ${seed}`,
        );
      });
    },
  );
}
