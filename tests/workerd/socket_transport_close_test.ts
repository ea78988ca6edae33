/**
 * `socketTransport(connect)` inside workerd, through Miniflare, closes
 * gracefully: the server (a `node:net` one in this process that records how
 * each connection ended) sees end-of-stream, never a reset, when the Worker's
 * client leaves with `close()`, with `quit()`, at the end of an
 * `await using` scope, and with a reply still in flight. The same checks as
 * tests/transport_close_test.ts, for the Workers runtime.
 *
 * Run by the `workerd` pass of scripts/test.ts, on the compiled file.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { type Ending, startCloseRecorder } from "../support/close_recorder.ts";
import { withWorker } from "./harness.ts";

/**
 * The Worker. `GET /?port=N&scenario=S` connects to port N and leaves by
 * scenario S: `close`, `quit`, `using` (the end of an `await using` scope),
 * or `in-flight` (close() with a lock call pending). Answers `{ ok }` or
 * `{ error, message }`.
 */
const WORKER_SOURCE = `
import { connect } from "cloudflare:sockets";
import { ELockClient, socketTransport } from "../../mod.js";

async function leave(port, scenario) {
  const options = { port, transport: socketTransport(connect) };
  switch (scenario) {
    case "close": {
      const client = await ELockClient.connect(options);
      await client.close();
      return "closed";
    }
    case "quit": {
      const client = await ELockClient.connect({ ...options, releaseTimeout: 5000 });
      await client.quit();
      return "quit";
    }
    case "using": {
      await using client = await ELockClient.connect(options);
      return client.closed ? "closed early" : "disposed";
    }
    case "in-flight": {
      const client = await ELockClient.connect(options);
      const pending = client.lock("k").then(() => "resolved", (error) => error.name);
      await client.close();
      return await pending;
    }
    default:
      throw new Error("unknown scenario " + scenario);
  }
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const port = Number(url.searchParams.get("port"));
    try {
      return Response.json({ ok: await leave(port, url.searchParams.get("scenario")) });
    } catch (error) {
      return Response.json({ error: error?.name ?? String(error), message: String(error?.message) });
    }
  },
};
`;

/** The server saw the client's end-of-stream, and no reset or other error. */
function assertGraceful(ending: Ending): void {
  assert.deepEqual(
    { end: ending.end, reset: ending.reset, errors: ending.errors },
    { end: true, reset: false, errors: [] },
    `the server saw ${JSON.stringify(ending)}`,
  );
}

const SCENARIOS: Array<{ scenario: string; what: string; answer: string; lines: string[] }> = [
  { scenario: "close", what: "close()", answer: "closed", lines: ["conn_id"] },
  {
    scenario: "quit",
    what: "quit()",
    answer: "quit",
    lines: ["conn_id", "quit", "set_timeout 5000"],
  },
  {
    scenario: "using",
    what: "leaving an await using scope",
    answer: "disposed",
    lines: ["conn_id", "unlock_all"],
  },
  {
    scenario: "in-flight",
    what: "close() with a reply in flight",
    answer: "ConnectionClosedError",
    lines: ["conn_id", "lock k"],
  },
];

for (const { scenario, what, answer, lines } of SCENARIOS) {
  test(`socketTransport in workerd: ${what} ends the connection with end-of-stream, not a reset`, async () => {
    await using server = await startCloseRecorder();
    await withWorker(WORKER_SOURCE, async (get) => {
      const outcome = await get(`port=${server.port}&scenario=${scenario}`);
      assert.deepEqual(outcome, { ok: answer });
      // Before Miniflare stops: what the server saw comes from the client's close.
      const ending = await server.ending();
      assertGraceful(ending);
      assert.deepEqual([...ending.lines].sort(), lines);
    });
  });
}
