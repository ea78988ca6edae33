/**
 * Property-based tests of key encoding (fast-check): any string given as a
 * key or value is either rejected with an {@linkcode InvalidKeyError} before
 * anything is written, or goes on the wire as exactly one protocol word,
 * for raw and SHA-1 keys, in `lock` and `lock_value`. Checked on the
 * command builders, and end to end: an {@linkcode ELockClient} over real
 * TCP to a server that records the bytes it receives.
 *
 * Seeds: see tests/support/property.ts.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import net from "node:net";
import fc from "fast-check";
import { ELockClient, InvalidKeyError, type KeyEncoding } from "../mod.ts";
import {
  encodeKey,
  lockCommand,
  lockValueCommand,
  MAX_KEY_BYTES,
} from "../src/protocol/commands.ts";
import { propertyParameters } from "./support/property.ts";

const encoder = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true });

/** Strings that hit every rule: separators, lone surrogates, lengths around the limit. */
const anyString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "binary-ascii", maxLength: 40 }),
  // Any UTF-16 code unit, so lone surrogates too.
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) }),
  fc.string({
    unit: fc.constantFrom("a", " ", "\r", "\n", "\t", "\0", "\u00a0", "\u2028", "\ud800", "\udc00"),
    maxLength: 6,
  }),
  // 1-4 UTF-8 bytes per character, around MAX_KEY_BYTES (1024) in all.
  fc.string({
    unit: fc.constantFrom("a", "é", "€", "😀"),
    minLength: MAX_KEY_BYTES / 4 - 2,
    maxLength: MAX_KEY_BYTES + 2,
  }),
);

/** The rule of the protocol: what a raw key must not be. */
function isValidWord(text: string): boolean {
  if (text === "" || /[ \r\n]/.test(text)) return false;
  if (/\p{Cs}/u.test(text)) return false;
  return encoder.encode(text).length <= MAX_KEY_BYTES;
}

function sha1Hex(text: string): string {
  return createHash("sha1").update(encoder.encode(text)).digest("hex");
}

/** The words of one command line's bytes; fails unless it is one `\n`-ended line of UTF-8. */
function words(bytes: Uint8Array): string[] {
  assert.equal(bytes.at(-1), 10, "ends with \\n");
  const body = bytes.subarray(0, -1);
  assert.ok(!body.includes(10) && !body.includes(13), "one line, no \\r");
  const split: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= body.length; i++) {
    if (i === body.length || body[i] === 32) {
      split.push(body.subarray(start, i));
      start = i + 1;
    }
  }
  return split.map((w) => {
    assert.ok(w.length > 0, "no empty word");
    return strict.decode(w);
  });
}

test("lockCommand/lockValueCommand: a key or value is rejected or sent as exactly one word", () => {
  const wait = fc.constantFrom(undefined, 0, 1, 1500, 86_400_000);
  fc.assert(
    fc.property(anyString, anyString, wait, (key, value, waitMs) => {
      const tail = waitMs === undefined || waitMs === 0 ? [] : [String(Math.ceil(waitMs / 1000))];
      if (isValidWord(key)) {
        assert.deepEqual(words(lockCommand(key, waitMs)), ["lock", key, ...tail]);
      } else {
        assert.throws(() => lockCommand(key, waitMs), InvalidKeyError);
      }
      if (isValidWord(key) && isValidWord(value)) {
        assert.deepEqual(words(lockValueCommand(key, value, waitMs)), [
          "lock_value",
          key,
          value,
          ...tail,
        ]);
      } else {
        assert.throws(() => lockValueCommand(key, value, waitMs), InvalidKeyError);
      }
    }),
    propertyParameters(500),
  );
});

test("encodeKey: raw keeps a valid word and rejects the rest; sha1 takes any string", async () => {
  await fc.assert(
    fc.asyncProperty(anyString, async (key) => {
      if (isValidWord(key)) assert.equal(await encodeKey(key, "raw"), key);
      else await assert.rejects(encodeKey(key, "raw"), InvalidKeyError);
      assert.equal(await encodeKey(key, "sha1"), sha1Hex(key));
    }),
    propertyParameters(500),
  );
});

/** A TCP server that answers `200 OK` to every line and keeps the lines' bytes. */
async function startRecorder() {
  const lines: Uint8Array[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    let pending = new Uint8Array(0);
    socket.on("data", (chunk: Uint8Array) => {
      const all = new Uint8Array(pending.length + chunk.length);
      all.set(pending);
      all.set(chunk, pending.length);
      let start = 0;
      for (let nl = all.indexOf(10); nl !== -1; nl = all.indexOf(10, start)) {
        lines.push(all.slice(start, nl + 1));
        socket.write("200 OK\n");
        start = nl + 1;
      }
      pending = all.slice(start);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    lines,
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

for (const keyEncoding of ["raw", "sha1"] as KeyEncoding[]) {
  test(
    `ELockClient (${keyEncoding} keys) over TCP: each key is rejected before anything is written, or sent as one word`,
    {
      timeout: 60_000,
    },
    async () => {
      await using recorder = await startRecorder();
      await using client = await ELockClient.connect({ port: recorder.port, keyEncoding });
      // connect() asks the session id (for reconnecting) and nothing else.
      assert.deepEqual(recorder.lines.splice(0).map(words), [["conn_id"]]);
      const wire = (text: string) => keyEncoding === "raw" ? text : sha1Hex(text);
      let marker = 0;
      /** The lines written since the last call, ended by a marker command. */
      const written = async (): Promise<string[][]> => {
        const name = `marker-${marker++}`;
        assert.equal(await client.unlock(name), true);
        const sent = recorder.lines.splice(0).map(words);
        assert.deepEqual(sent.at(-1), ["unlock", wire(name)]);
        return sent.slice(0, -1);
      };
      await fc.assert(
        fc.asyncProperty(anyString, anyString, async (key, value) => {
          const keyOk = keyEncoding === "sha1" || isValidWord(key);
          const valueOk = keyEncoding === "sha1" || isValidWord(value);
          if (keyOk) {
            assert.equal(await client.lock(key), true);
            assert.deepEqual(await written(), [["lock", wire(key)]]);
          } else {
            await assert.rejects(client.lock(key), InvalidKeyError);
            assert.deepEqual(await written(), [], "nothing written for a rejected key");
          }
          if (keyOk && valueOk) {
            assert.equal(await client.lockValue(key, value, { timeout: 2000 }), true);
            assert.deepEqual(await written(), [["lock_value", wire(key), wire(value), "2"]]);
          } else {
            await assert.rejects(client.lockValue(key, value), InvalidKeyError);
            assert.deepEqual(await written(), [], "nothing written for a rejected key or value");
          }
        }),
        propertyParameters(200),
      );
    },
  );
}
