/**
 * Unit tests of key encoding and command building: exact bytes, SHA-1
 * vectors, rejected injection attempts, wait rounding and range checks.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  checkWord,
  connIdCommand,
  debugCommand,
  encodeKey,
  lockCommand,
  lockValueCommand,
  MAX_KEY_BYTES,
  quitCommand,
  rawCommand,
  setTimeoutCommand,
  statsCommand,
  unlockAllCommand,
  unlockCommand,
} from "../src/protocol/commands.ts";
import { InvalidKeyError } from "../src/errors.ts";

const encoder = new TextEncoder();

function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Strings that must never reach the wire as a raw key, value or id. */
const INJECTIONS = [
  "",
  " ",
  "a b",
  "k\nunlock_all",
  "k\r\nunlock_all",
  "k\r",
  "\n",
  "k 5",
  "k\nquit\n",
  "trailing ",
  " leading",
  "\uD800",
  "a\uDC00b",
];

test("encodeKey() sends a valid raw key unchanged", async () => {
  for (
    const key of ["k", "orders/7", "tab\there", "héllo", "🔒", "x".repeat(MAX_KEY_BYTES), "#1,(x)"]
  ) {
    assert.equal(await encodeKey(key, "raw"), key);
    assert.equal(await encodeKey(key, "raw", "value"), key);
  }
});

test("encodeKey() rejects every injection attempt in raw mode with InvalidKeyError", async () => {
  for (const key of INJECTIONS) {
    for (const what of ["key", "value"] as const) {
      await assert.rejects(encodeKey(key, "raw", what), (error: unknown) => {
        assert.ok(error instanceof InvalidKeyError, JSON.stringify(key));
        assert.equal(error.key, key);
        assert.equal(error.what, what);
        return true;
      });
    }
  }
});

test("encodeKey() counts the 1024-byte limit in UTF-8 bytes", async () => {
  assert.equal(MAX_KEY_BYTES, 1024);
  await assert.rejects(encodeKey("x".repeat(1025), "raw"), InvalidKeyError);
  await assert.rejects(encodeKey("x".repeat(5_000_000), "raw"), InvalidKeyError);
  // "é" is two bytes: 512 of them fit, 513 do not.
  assert.equal(await encodeKey("é".repeat(512), "raw"), "é".repeat(512));
  await assert.rejects(encodeKey("é".repeat(513), "raw"), /longer than 1024 UTF-8 bytes/);
  // "🔒" is four bytes (two UTF-16 units).
  assert.equal(await encodeKey("🔒".repeat(256), "raw"), "🔒".repeat(256));
  await assert.rejects(encodeKey("🔒".repeat(257), "raw"), InvalidKeyError);
  // "€" is three bytes: 341 fit, 342 do not.
  assert.equal(await encodeKey("€".repeat(341), "raw"), "€".repeat(341));
  await assert.rejects(encodeKey("€".repeat(342), "raw"), InvalidKeyError);
});

test("encodeKey() sends the lower-case hex SHA-1 in sha1 mode", async () => {
  assert.equal(await encodeKey("", "sha1"), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  assert.equal(await encodeKey("abc", "sha1"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  // printf 'héllo' | sha1sum
  assert.equal(await encodeKey("héllo", "sha1"), "35b5ea45c5e41f78b46a937cc74d41dfea920890");
  // printf 'invoice 42' | sha1sum
  assert.equal(
    await encodeKey("invoice 42", "sha1", "value"),
    "796dbca6fcb793a1632c9465b46a468ecde5b8a6",
  );
});

test("encodeKey() accepts any string in sha1 mode", async () => {
  for (const key of [...INJECTIONS, "x".repeat(100_000)]) {
    const word = await encodeKey(key, "sha1");
    assert.match(word, /^[0-9a-f]{40}$/);
  }
});

test("encodeKey() rejects a non-string key and an unknown encoding with TypeError", async () => {
  await assert.rejects(encodeKey(42 as unknown as string, "raw"), TypeError);
  await assert.rejects(encodeKey("k", "md5" as unknown as "raw"), TypeError);
});

test("checkWord() names a session id in its error", () => {
  assert.throws(() => checkWord("1 2", "session id"), /Invalid session id "1 2": contains a space/);
});

test("lockCommand() builds the one-word form without a wait", () => {
  assert.deepEqual(lockCommand("k"), bytes("lock k\n"));
  assert.deepEqual(lockCommand("k", undefined), bytes("lock k\n"));
  assert.deepEqual(lockCommand("k", 0), bytes("lock k\n"));
});

test("lockCommand() rounds the wait up to whole seconds", () => {
  const cases: [number, string][] = [
    [0.001, "1"],
    [1, "1"],
    [999, "1"],
    [1000, "1"],
    [1001, "2"],
    [1999.5, "2"],
    [2000, "2"],
    [5000, "5"],
  ];
  for (const [ms, seconds] of cases) {
    assert.deepEqual(lockCommand("k", ms), bytes(`lock k ${seconds}\n`), String(ms));
  }
});

test("lockCommand() clamps the wait to 2147483 seconds", () => {
  assert.deepEqual(lockCommand("k", 2_147_483_000), bytes("lock k 2147483\n"));
  assert.deepEqual(lockCommand("k", 2_147_483_001), bytes("lock k 2147483\n"));
  assert.deepEqual(lockCommand("k", Number.MAX_SAFE_INTEGER), bytes("lock k 2147483\n"));
  assert.deepEqual(lockCommand("k", Infinity), bytes("lock k 2147483\n"));
});

test("lockCommand() rejects a negative or non-numeric wait with RangeError", () => {
  for (const ms of [-1, -0.5, NaN, "5" as unknown as number, -Infinity]) {
    assert.throws(() => lockCommand("k", ms), RangeError, String(ms));
  }
});

test("lockCommand() sends UTF-8 bytes", () => {
  assert.deepEqual(
    lockCommand("héllo", 1),
    new Uint8Array([...bytes("lock h"), 0xc3, 0xa9, ...bytes("llo 1\n")]),
  );
});

test("lockValueCommand() builds both forms", () => {
  assert.deepEqual(lockValueCommand("k", "red"), bytes("lock_value k red\n"));
  assert.deepEqual(lockValueCommand("k", "red", 0), bytes("lock_value k red\n"));
  assert.deepEqual(lockValueCommand("k", "red", 1001), bytes("lock_value k red 2\n"));
});

test("unlockCommand(), unlockAllCommand(), statsCommand(), debugCommand() and quitCommand() build their lines", () => {
  assert.deepEqual(unlockCommand("k"), bytes("unlock k\n"));
  assert.deepEqual(unlockAllCommand(), bytes("unlock_all\n"));
  assert.deepEqual(statsCommand(), bytes("stats\n"));
  assert.deepEqual(debugCommand(), bytes("debug\n"));
  assert.deepEqual(quitCommand(), bytes("quit\n"));
});

test("connIdCommand() builds both forms", () => {
  assert.deepEqual(connIdCommand(), bytes("conn_id\n"));
  assert.deepEqual(connIdCommand("42"), bytes("conn_id 42\n"));
  assert.deepEqual(connIdCommand("aB-_9x"), bytes("conn_id aB-_9x\n"));
});

test("every builder rejects every injection attempt with InvalidKeyError", () => {
  for (const bad of INJECTIONS) {
    const attempts: [string, () => unknown][] = [
      ["lock", () => lockCommand(bad)],
      ["lock wait", () => lockCommand(bad, 1000)],
      ["lock_value key", () => lockValueCommand(bad, "v")],
      ["lock_value value", () => lockValueCommand("k", bad)],
      ["lock_value wait", () => lockValueCommand("k", bad, 1000)],
      ["unlock", () => unlockCommand(bad)],
      ["conn_id", () => connIdCommand(bad)],
    ];
    for (const [name, attempt] of attempts) {
      assert.throws(attempt, InvalidKeyError, `${name} ${JSON.stringify(bad)}`);
    }
  }
  assert.throws(() => lockCommand("x".repeat(MAX_KEY_BYTES + 1)), InvalidKeyError);
  assert.throws(() => connIdCommand("1".repeat(MAX_KEY_BYTES + 1)), InvalidKeyError);
});

test("setTimeoutCommand() sends whole milliseconds", () => {
  assert.deepEqual(setTimeoutCommand(0), bytes("set_timeout 0\n"));
  assert.deepEqual(setTimeoutCommand(30_000), bytes("set_timeout 30000\n"));
  assert.deepEqual(setTimeoutCommand(2_147_483_647), bytes("set_timeout 2147483647\n"));
});

test("setTimeoutCommand() rejects what is not a whole 0..2147483647 with RangeError", () => {
  for (const ms of [-1, 1.5, 2_147_483_648, NaN, Infinity, "5" as unknown as number, 1e21]) {
    assert.throws(() => setTimeoutCommand(ms), RangeError, String(ms));
  }
});

test("rawCommand() sends one line", () => {
  assert.deepEqual(rawCommand("lock k 5"), bytes("lock k 5\n"));
  assert.deepEqual(rawCommand("lock é"), bytes("lock é\n"));
});

test("rawCommand() rejects a line break or an empty line with TypeError", () => {
  for (const text of ["", "a\nb", "a\r", "\n", "lock k\r\nunlock_all", "x\n"]) {
    assert.throws(() => rawCommand(text), TypeError, JSON.stringify(text));
  }
});
