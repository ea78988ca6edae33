/**
 * Unit tests of the client errors: names, fields, causes, and deadlock path
 * parsing (the corrected fixture paths and the reference server's
 * repeated-key form).
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectionClosedError,
  DeadlockError,
  ELockError,
  InvalidKeyError,
  LockUnavailableError,
  parseDeadlockPath,
  ProtocolError,
  UnexpectedResponseError,
  UnsupportedCommandError,
} from "../src/errors.ts";

test("parseDeadlockPath() parses the three-session path of the fixture", () => {
  assert.deepEqual(parseDeadlockPath("#3 => e1 = #1 => e2 = #2 => e3 = #3"), [
    { session: "3", key: "e1" },
    { session: "1", key: "e2" },
    { session: "2", key: "e3" },
  ]);
});

test("parseDeadlockPath() accepts the reply text with its Deadlock: prefix", () => {
  assert.deepEqual(parseDeadlockPath("Deadlock: #2 => d1 = #1 => d2 = #2"), [
    { session: "2", key: "d1" },
    { session: "1", key: "d2" },
  ]);
});

test("parseDeadlockPath() keeps the reference server's repeated keys as written", () => {
  assert.deepEqual(parseDeadlockPath("#2 => d1 = #1 => d1 = #2"), [
    { session: "2", key: "d1" },
    { session: "1", key: "d1" },
  ]);
});

test("parseDeadlockPath() keeps opaque session ids and odd keys", () => {
  assert.deepEqual(parseDeadlockPath("#aB-_9x => = = #Zz => => = #aB-_9x"), [
    { session: "aB-_9x", key: "=" },
    { session: "Zz", key: "=>" },
  ]);
});

test("parseDeadlockPath() returns an empty cycle for what is not a path", () => {
  for (
    const text of [
      "",
      "Deadlock:",
      "#1",
      "#1 => k",
      "#1 => k = ",
      "#1 -> k = #2",
      "1 => k = #2",
      "#1 => k = 2",
      "#1 => k = # ",
      "#1 => k = #2 =>",
      "#1 => k - #2",
    ]
  ) {
    assert.deepEqual(parseDeadlockPath(text), [], JSON.stringify(text));
  }
  assert.deepEqual(parseDeadlockPath(undefined as unknown as string), []);
});

test("DeadlockError keeps the server's message, its path and the parsed cycle", () => {
  const error = new DeadlockError("Deadlock: #3 => e1 = #1 => e2 = #2 => e3 = #3");
  assert.ok(error instanceof ELockError);
  assert.ok(error instanceof Error);
  assert.equal(error.name, "DeadlockError");
  assert.equal(error.message, "Deadlock: #3 => e1 = #1 => e2 = #2 => e3 = #3");
  assert.equal(error.path, "#3 => e1 = #1 => e2 = #2 => e3 = #3");
  assert.deepEqual(error.cycle, [
    { session: "3", key: "e1" },
    { session: "1", key: "e2" },
    { session: "2", key: "e3" },
  ]);
});

test("DeadlockError has an empty cycle for an unparsable path", () => {
  const error = new DeadlockError("Deadlock: something went round");
  assert.equal(error.path, "something went round");
  assert.deepEqual(error.cycle, []);
});

test("every error class sets its name and is an ELockError", () => {
  const errors: [ELockError, string][] = [
    [new ELockError("x"), "ELockError"],
    [new DeadlockError("Deadlock: #1 => k = #1"), "DeadlockError"],
    [new LockUnavailableError("k"), "LockUnavailableError"],
    [new UnexpectedResponseError("unlock k", "500 x"), "UnexpectedResponseError"],
    [new ConnectionClosedError(), "ConnectionClosedError"],
    [new InvalidKeyError("a b", "contains a space"), "InvalidKeyError"],
    [
      new UnsupportedCommandError("debug", '400 Unknown command: "debug"'),
      "UnsupportedCommandError",
    ],
    [new ProtocolError("bad"), "ProtocolError"],
  ];
  for (const [error, name] of errors) {
    assert.equal(error.name, name);
    assert.ok(error instanceof ELockError, name);
    assert.ok(error instanceof Error, name);
    assert.equal(error.cause, undefined, name);
    assert.ok(!("cause" in error), `${name} has no cause property without one`);
  }
});

test("every error class keeps a cause", () => {
  const cause = new Error("socket reset");
  const errors: ELockError[] = [
    new ELockError("x", { cause }),
    new DeadlockError("Deadlock: #1 => k = #1", { cause }),
    new LockUnavailableError("k", { cause }),
    new UnexpectedResponseError("unlock k", "500 x", { cause }),
    new ConnectionClosedError("Connection closed", { cause }),
    new InvalidKeyError("a b", "contains a space", { cause }),
    new UnsupportedCommandError("debug", "400 x", { cause }),
    new ProtocolError("bad", { cause }),
  ];
  for (const error of errors) assert.equal(error.cause, cause, error.name);
});

test("UnexpectedResponseError keeps the command and the reply", () => {
  const error = new UnexpectedResponseError("unlock k", "500 Internal server error");
  assert.equal(error.command, "unlock k");
  assert.equal(error.reply, "500 Internal server error");
  assert.equal(error.message, 'Unexpected response to "unlock k": 500 Internal server error');
});

test("LockUnavailableError keeps the key and the reply", () => {
  const error = new LockUnavailableError("k", { reply: "409 Already locked by #7" });
  assert.equal(error.key, "k");
  assert.equal(error.reply, "409 Already locked by #7");
  assert.equal(error.message, "Lock unavailable: k: 409 Already locked by #7");
  assert.equal(new LockUnavailableError("k").reply, null);
  assert.equal(new LockUnavailableError("k").message, "Lock unavailable: k");
});

test("InvalidKeyError keeps the key, the reason and what it was", () => {
  const error = new InvalidKeyError("a b", "contains a space", { what: "value" });
  assert.equal(error.key, "a b");
  assert.equal(error.reason, "contains a space");
  assert.equal(error.what, "value");
  assert.equal(error.message, 'Invalid value "a b": contains a space');
  assert.equal(new InvalidKeyError("", "is empty").what, "key");
});

test("InvalidKeyError shortens a huge key in its message but keeps it whole", () => {
  const key = "k".repeat(5000);
  const error = new InvalidKeyError(key, "is too long");
  assert.equal(error.key, key);
  assert.ok(error.message.length < 200, error.message);
});

test("UnsupportedCommandError says an extended server is needed", () => {
  const error = new UnsupportedCommandError("lock_value", '400 Unknown command: "lock_value"');
  assert.equal(error.command, "lock_value");
  assert.equal(error.reply, '400 Unknown command: "lock_value"');
  assert.match(error.message, /extended eLock server/);
  assert.match(error.message, /lock_value/);
});

test("ConnectionClosedError has a default message", () => {
  assert.equal(new ConnectionClosedError().message, "Connection closed");
});
