/**
 * Abort races: 1,000 lock calls given up at random moments around their
 * grants (by an abort signal or a deadline) while another client hands the
 * key over. Afterwards the aborting client holds nothing: every late grant
 * was released. Run with `ELOCK_TEST_SEED=N` to repeat a run.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { DIALECTS, withServer } from "./support/client_server.ts";
import { random } from "./support/random.ts";
import { sleep } from "./support/wait.ts";
import { sessionName } from "../mod.ts";

const ROUNDS = 1000;

for (const dialect of DIALECTS) {
  test(`[${dialect}] ${ROUNDS} random aborts and deadlines around grants leave no lock held`, {
    timeout: 300_000,
  }, async () => {
    const rng = random();
    const seed = `(ELOCK_TEST_SEED=${rng.seed})`;
    await withServer(dialect, async ({ connect }) => {
      const holder = await connect();
      const racer = await connect();
      const racerId = sessionName(await racer.sessionId());
      let granted = 0;
      let gaveUp = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const key = `k${round % 7}`;
        assert.equal(
          await holder.lock(key, { timeout: 60_000 }),
          true,
          `holder gets ${key} ${seed}`,
        );
        const controller = new AbortController();
        const byAbort = rng.next() < 0.5;
        const call = racer.lock(key, {
          timeout: byAbort ? 60_000 : rng.int(1, 6),
          signal: controller.signal,
        }).then((ok) => ok, () => false);
        const handOver = rng.int(0, 4);
        const abortAt = rng.int(0, 5);
        await Promise.all([
          sleep(handOver).then(() => holder.unlock(key)),
          byAbort ? sleep(abortAt).then(() => controller.abort(new Error("gave up"))) : null,
        ]);
        if (await call) {
          granted++;
          assert.equal(await racer.unlock(key), true, `${key} ${seed}`);
        } else gaveUp++;
      }
      // Behind every late release: once answered, nothing of the racer is left.
      await racer.stats();
      await holder.unlockAll();
      assert.deepEqual(
        (await holder.stats()).locks,
        0,
        `no lock left after ${granted} grants and ${gaveUp} give-ups ${seed}`,
      );
      if (dialect === "extended") {
        const { locks } = await holder.debug();
        assert.ok(!locks.some((lock) => lock.holders.includes(racerId)), seed);
      }
      assert.ok(granted > 0 && gaveUp > 0, `both outcomes happened ${seed}`);
    });
  });
}
