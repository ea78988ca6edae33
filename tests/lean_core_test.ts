/**
 * What the lean client core (cached command lines, interned one-line
 * replies) must not change: a reply handed to a caller of `command()` is
 * the caller's own, and a key whose line was cached is still checked as a
 * word wherever it is used, and block replies (`stats`, `debug`) are never
 * shared. Against the bundled server, over TCP, both dialects (the reply
 * reader alone on a byte stream for the blocks).
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { InvalidKeyError } from "../mod.ts";
import { checkWord, lockCommand, unlockCommand } from "../src/protocol/commands.ts";
import { ReplyReader } from "../src/protocol/reply_reader.ts";
import { DIALECTS, withServer } from "./support/client_server.ts";

for (const dialect of DIALECTS) {
  test(`[${dialect}] a command() reply is the caller's own: changing it changes no other reply`, async () => {
    await withServer(dialect, async ({ connect }) => {
      const client = await connect();
      const first = await client.command("conn_id");
      assert.equal(first.code, 200);
      const id = first.message;
      // The caller may keep and change what it got (the type says it may).
      first.message = "changed";
      first.lines.push("mine");
      const second = await client.command("conn_id");
      assert.deepEqual(second, { code: 200, message: id, lines: [] });
      assert.notEqual(second, first);
      // The same line answers the client's own calls meanwhile, unchanged.
      assert.equal(await client.lock("k"), true);
      const locked = await client.command("lock k");
      locked.code = 409;
      assert.equal(await client.lock("k"), true, "re-entrant: still 200 for the client");
      assert.equal(await client.unlock("k"), true);
      const stats = await client.command("stats");
      stats.lines.push("STAT extra 1");
      assert.equal((await client.stats()).locks, 0);
    });
  });
}

test("a key whose lock line was built is still checked as a word when used as something else", () => {
  lockCommand("cached-key");
  unlockCommand("cached-key-2");
  checkWord("cached-key", "value");
  checkWord("cached-key-2", "session id");
  for (const bad of [5, null, undefined, {}, ["cached-key"]]) {
    assert.throws(() => checkWord(bad as unknown as string, "value"), TypeError);
    assert.throws(() => lockCommand(bad as unknown as string), TypeError);
    assert.throws(() => unlockCommand(bad as unknown as string), TypeError);
  }
  for (const bad of ["", "cached-key ", "a b", "cached-key\n", "x\r"]) {
    assert.throws(() => checkWord(bad, "value"), InvalidKeyError);
    assert.throws(() => lockCommand(bad), InvalidKeyError);
    assert.throws(() => lockCommand(bad, 1000), InvalidKeyError);
    assert.throws(() => unlockCommand(bad), InvalidKeyError);
  }
  assert.throws(() => lockCommand("cached-key", -1), RangeError);
  assert.throws(() => lockCommand("cached-key", Number.NaN), RangeError);
  assert.equal(new TextDecoder().decode(lockCommand("cached-key", 1500)), "lock cached-key 2\n");
  assert.equal(new TextDecoder().decode(lockCommand("cached-key", 0)), "lock cached-key\n");
});

test("block replies are never shared: each stats/debug reply has its own lines", async () => {
  const block = "200 STATS\nSTAT clients 1\nSTAT locks 0\nSTAT monitoring 1\nEND\n";
  const debug = "200 DEBUG\nLOCK k #1\nEND\n";
  const reader = new ReplyReader(new Blob([block, "200 OK\n", block, debug, debug]).stream());
  const first = await reader.read();
  assert.equal(Object.isFrozen(first), false);
  first.lines.push("STAT mine 1");
  const ok = await reader.read();
  assert.deepEqual(ok, { code: 200, message: "OK", lines: [] });
  const second = await reader.read();
  assert.notEqual(second, first);
  assert.deepEqual(second.lines, ["STAT clients 1", "STAT locks 0", "STAT monitoring 1"]);
  const [d1, d2] = [await reader.read(), await reader.read()];
  assert.notEqual(d1, d2);
  assert.notEqual(d1.lines, d2.lines);
  assert.deepEqual(d2.lines, ["LOCK k #1"]);
});
