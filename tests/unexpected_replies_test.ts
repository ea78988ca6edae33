/**
 * Replies a real eLock server does not send for a command: every method
 * turns them into an `UnexpectedResponseError` naming the command and the
 * reply (as the PHP client does), and stays in step. A scripted server
 * over real TCP.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { ELockClient, ProtocolError, UnexpectedResponseError } from "../mod.ts";
import { startScriptedServer } from "./support/proxy.ts";

const REPLY = "500 Internal server error";

function unexpected(command: string) {
  return (error: unknown) => {
    assert.ok(error instanceof UnexpectedResponseError, String(error));
    assert.equal(error.command, command);
    assert.equal(error.reply, REPLY);
    return true;
  };
}

test("every method rejects an unexpected reply with UnexpectedResponseError", async () => {
  await using server = await startScriptedServer((line, write) => {
    if (line === "stats") write("200 STATS\nSTAT clients many\nEND\n");
    else write(`${REPLY}\n`);
  });
  const client = await ELockClient.connect({ port: server.port, reconnect: false });
  try {
    await assert.rejects(client.setReleaseTimeout(0), unexpected("set_timeout 0"));
    await assert.rejects(client.lock("k", { timeout: 2000 }), unexpected("lock k 2"));
    await assert.rejects(client.lockValue("k", "v"), unexpected("lock_value k v"));
    await assert.rejects(client.unlock("k"), unexpected("unlock k"));
    await assert.rejects(client.unlockAll(), unexpected("unlock_all"));
    await assert.rejects(client.debug(), unexpected("debug"));
    await assert.rejects(client.sessionId(), unexpected("conn_id"));
    await assert.rejects(client.resume("7"), unexpected("conn_id 7"));
    await assert.rejects(client.acquire("k"), unexpected("lock k"));
    assert.deepEqual(await client.command("anything"), {
      code: 500,
      message: "Internal server error",
      lines: [],
    });
    await assert.rejects(client.stats(), ProtocolError, "a malformed counter");
    await assert.rejects(client.quit(), unexpected("quit"));
    assert.equal(client.closed, true, "quit closes even when the reply is wrong");
  } finally {
    await client.close();
  }
});
