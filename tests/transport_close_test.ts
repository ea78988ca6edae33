/**
 * Every transport closes gracefully: the server sees end-of-stream (FIN),
 * never a reset, when the client leaves with `close()`, with `quit()`, at
 * the end of an `await using` scope, and with a reply still in flight; and a
 * transport's close still resolves, after the end-of-stream, when the server
 * never closes its side. (A reset crashes the NodeJS eLock server, and every lock
 * on it goes.) The
 * transports of the running runtime, as in tests/transport_test.ts;
 * `socketTransport` runs in workerd: tests/workerd/socket_transport_close_test.ts.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionClosedError, ELockClient } from "../mod.ts";
import { type Ending, startCloseRecorder } from "./support/close_recorder.ts";
import { TRANSPORTS } from "./support/transports.ts";

/** The server saw the client's end-of-stream, and no reset or other error. */
function assertGraceful(ending: Ending): void {
  assert.deepEqual(
    { end: ending.end, reset: ending.reset, errors: ending.errors },
    { end: true, reset: false, errors: [] },
    `the server saw ${JSON.stringify(ending)}`,
  );
}

for (const [name, make] of TRANSPORTS) {
  test(`${name} transport: close() ends the connection with end-of-stream, not a reset`, async () => {
    await using server = await startCloseRecorder();
    const client = await ELockClient.connect({ port: server.port, transport: make() });
    await client.close();
    const ending = await server.ending();
    assertGraceful(ending);
    assert.deepEqual(ending.lines, ["conn_id"]);
  });

  test(`${name} transport: quit() ends the connection with end-of-stream, not a reset`, async () => {
    await using server = await startCloseRecorder();
    const client = await ELockClient.connect({
      port: server.port,
      transport: make(),
      releaseTimeout: 5000,
    });
    await client.quit();
    const ending = await server.ending();
    assertGraceful(ending);
    assert.deepEqual([...ending.lines].sort(), ["conn_id", "quit", "set_timeout 5000"]);
  });

  test(`${name} transport: leaving an await using scope ends the connection with end-of-stream`, async () => {
    await using server = await startCloseRecorder();
    {
      await using client = await ELockClient.connect({ port: server.port, transport: make() });
      assert.equal(client.closed, false);
    }
    const ending = await server.ending();
    assertGraceful(ending);
    assert.deepEqual(ending.lines, ["conn_id", "unlock_all"]);
  });

  test(`${name} transport: close() with a reply in flight ends with end-of-stream, not a reset`, async () => {
    await using server = await startCloseRecorder();
    const client = await ELockClient.connect({ port: server.port, transport: make() });
    // The server answers the lock only after the client's FIN: the reply
    // reaches a client that has stopped reading.
    const pending = client.lock("k");
    const rejected = assert.rejects(pending, ConnectionClosedError);
    await client.close();
    await rejected;
    const ending = await server.ending();
    assertGraceful(ending);
    assert.deepEqual(ending.lines, ["conn_id", "lock k"]);
  });

  test(`${name} transport: to a server that keeps its side open, the close resolves after end-of-stream`, async () => {
    await using server = await startCloseRecorder({ keepOpen: true });
    const connection = await make().connect({ host: "127.0.0.1", port: server.port });
    const reader = connection.readable.getReader();
    const writer = connection.writable.getWriter();
    await writer.write(new TextEncoder().encode("conn_id\n"));
    assert.equal(new TextDecoder().decode((await reader.read()).value), "200 1\n");
    // What the client's Wire.close() does: cancel, abort, close. The close
    // resolves once the socket is forced shut, after the bounded wait.
    await reader.cancel();
    await writer.abort();
    await connection.close();
    // What the server had seen when the client's end arrived: nothing forced before it.
    const seen = await server.ended();
    assertGraceful(seen);
    assert.deepEqual(seen.lines, ["conn_id"]);
  });
}
