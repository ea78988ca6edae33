/**
 * Interleavings around an aborted wait that frees its session
 * (`Supervisor.renew`, `Connection.leaveWait`): what is queued behind the
 * wait goes to the next connection only, whatever the old connection's
 * writes were doing when the wait was given up. Against the bundled server,
 * over TCP, both dialects; where a write must still be under way when the
 * wait is given up, the client's transport holds its write completions (a
 * socket whose send buffer is full: bytes go out, the write resolves late).
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { defaultTransport, ELockClient, type Transport } from "../mod.ts";
import { DIALECTS, withServer } from "./support/client_server.ts";
import { outcome, within } from "./support/lock_truth.ts";
import { until } from "./support/wait.ts";

/**
 * The default transport, with write completions that can be held: the
 * bytes of each write are handed to the socket at once, but while held the
 * write resolves only on {@linkcode release} (and later writes wait behind
 * it, as they would behind a full socket).
 */
function heldWrites(): { transport: Transport; hold(): void; release(): void } {
  const inner = defaultTransport();
  let gate: Promise<void> | null = null;
  let open = () => {};
  return {
    transport: {
      async connect(options) {
        const connection = await inner.connect(options);
        const writer = connection.writable.getWriter();
        const writable = new WritableStream<Uint8Array>({
          async write(chunk) {
            const held = gate;
            await writer.write(chunk);
            if (held !== null) await held;
          },
          close: () => writer.close(),
          abort: (reason) => writer.abort(reason),
        });
        return { readable: connection.readable, writable, close: () => connection.close() };
      },
    },
    hold() {
      gate = new Promise<void>((resolve) => open = resolve);
    },
    release() {
      gate = null;
      open();
    },
  };
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] a call queued behind an aborted wait whose write was still under way goes to the next connection`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      assert.equal(await other.lock("busy"), true);
      const writes = heldWrites();
      const client = await connect({ poolSize: 1, transport: writes.transport });
      const controller = new AbortController();
      writes.hold();
      const waiting = client.acquire("busy", { timeout: 60_000, signal: controller.signal });
      await waits("busy");
      // Queued behind the wait (the write of the wait has not completed yet).
      const id = outcome(client.command("conn_id"));
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      writes.release();
      const { value, error } = await within(id, 20_000, "conn_id answered");
      assert.equal(error, undefined, `conn_id failed: ${error}`);
      assert.equal(value?.code, 200);
      assert.equal(await client.lock("free"), true);
      assert.equal(await client.unlock("free"), true);
    });
  });

  test(`[${dialect}] set_timeout and lock queued behind an aborted wait are not sent after its farewell on the old connection (no lock left to a ghost)`, async () => {
    await withServer(dialect, async (fixture) => {
      const { connect, waits } = fixture;
      const other = await connect();
      assert.equal(await other.lock("busy"), true);
      const writes = heldWrites();
      const client = await connect({ poolSize: 1, transport: writes.transport });
      const controller = new AbortController();
      writes.hold();
      const waiting = client.acquire("busy", { timeout: 60_000, signal: controller.signal });
      await waits("busy");
      const ghost = fixture.events.find((e) => e.type === "wait" && e.key === "busy");
      assert.ok(ghost !== undefined && ghost.type === "wait");
      // Queued behind the wait: a release timeout for the session, and a raw lock of a free key.
      const set = outcome(client.setReleaseTimeout(30_000));
      const locked = outcome(client.lock("x"));
      controller.abort(new Error("enough"));
      await assert.rejects(waiting, /enough/);
      writes.release();
      assert.deepEqual(await within(set, 20_000, "setReleaseTimeout"), { value: undefined });
      assert.deepEqual(
        await within(locked, 20_000, "lock(x)"),
        { value: true },
        "x was free: the raw lock gets it",
      );
      await until(
        () => fixture.events.some((e) => e.type === "disconnect" && e.session === ghost.session),
        "the old session's connection ended",
      );
      // The old session (release timeout 0 by its farewell) holds nothing now.
      const probe = await ELockClient.connect({ port: fixture.port, releaseTimeout: 0 });
      try {
        assert.equal(await probe.lock("x"), false, "x is the client's");
        assert.equal(await client.unlock("x"), true);
        assert.equal(await probe.lock("x"), true, "and nobody else held it");
      } finally {
        await probe.close();
      }
    });
  });
}
