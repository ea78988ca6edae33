/**
 * The command timeout after the connection's one timer was armed for a
 * longer limit (a waiting lock): the shorter limit of the next command
 * still applies. A real proxy silences a real server.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionClosedError } from "../mod.ts";
import { withServer } from "./support/client_server.ts";
import { startProxy } from "./support/proxy.ts";

test(
  "a command after a long wait times out at its own command timeout",
  { timeout: 60_000 },
  async () => {
    await withServer("extended", async ({ connect, port, waits }) => {
      await using proxy = await startProxy(port);
      const holder = await connect();
      await holder.lock("k");
      const client = await connect({ port: proxy.port, commandTimeout: 1000 });
      // Armed for 1 s + 600 s while the lock waits.
      const granted = client.lock("k", { timeout: 600_000 });
      await waits("k");
      await holder.unlock("k");
      assert.equal(await granted, true);
      proxy.silence();
      let bound: ReturnType<typeof setTimeout> | undefined;
      const tooLate = new Promise<never>((_, reject) => {
        bound = setTimeout(() => reject(new Error("still no timeout after 30 s")), 30_000);
      });
      try {
        await assert.rejects(Promise.race([client.stats(), tooLate]), (error: unknown) => {
          assert.ok(error instanceof ConnectionClosedError);
          assert.match(error.message, /no reply within 1000 ms/);
          return true;
        });
      } finally {
        clearTimeout(bound);
      }
    });
  },
);
