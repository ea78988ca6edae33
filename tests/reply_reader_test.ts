/**
 * Unit tests of the reply reader, without sockets: the recorded replies of
 * every transcript fed whole and one byte at a time, both line ends, STATS
 * and DEBUG blocks, limits, malformed lines, end of stream, UTF-8 split
 * across chunks, cancel; and the STATS/DEBUG parsers.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import {
  DEFAULT_MAX_LINE_LENGTH,
  parseDebug,
  parseStats,
  type Reply,
  ReplyReader,
} from "../src/protocol/reply_reader.ts";
import { ConnectionClosedError, ProtocolError } from "../src/errors.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const encoder = new TextEncoder();

/** A pull-driven stream over fixed chunks that records what was asked of it. */
interface Source {
  readonly stream: ReadableStream<Uint8Array>;
  /** How many times the reader asked for a chunk. */
  pulls: number;
  cancelled: boolean;
  reason: unknown;
}

function sourceOf(chunks: Iterable<Uint8Array>): Source {
  const iterator = chunks[Symbol.iterator]();
  const source: Source = {
    stream: new ReadableStream<Uint8Array>({
      pull(controller) {
        source.pulls++;
        const next = iterator.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      cancel(reason) {
        source.cancelled = true;
        source.reason = reason;
      },
    }, { highWaterMark: 0 }),
    pulls: 0,
    cancelled: false,
    reason: undefined,
  };
  return source;
}

function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

function oneByteAtATime(data: Uint8Array): Uint8Array[] {
  return Array.from(data, (byte) => new Uint8Array([byte]));
}

/** The same bytes as one chunk and as one chunk per byte. */
function feedings(data: Uint8Array): [string, Uint8Array[]][] {
  return [["whole", [data]], ["one byte at a time", oneByteAtATime(data)]];
}

function readerOf(chunks: Iterable<Uint8Array>, options = {}): ReplyReader {
  return new ReplyReader(sourceOf(chunks).stream, options);
}

/** What connection `conn` of a transcript received, as the bytes it got. */
async function receivedBytes(path: string, conn = "A"): Promise<Uint8Array> {
  const text = await readFile(new URL(path, FIXTURES), "utf8");
  return bytes(receivedLines(text, conn).map((line) => `${line}\n`).join(""));
}

/** Received lines of `conn` with ids filled in and `\r` restored. */
function receivedLines(text: string, conn: string): string[] {
  const ids: Record<string, string> = { A: "1", B: "2", C: "3", D: "4" };
  return text.split("\n")
    .filter((line) => line.startsWith(`${conn}< `))
    .map((line) =>
      line.slice(3)
        .replace(/\{([A-Z])\}/g, (_, name: string) => ids[name] ?? name)
        .replace(/\\r$/, "\r")
    );
}

/** The replies those lines make, worked out independently of the reader. */
function expectedReplies(lines: string[]): Reply[] {
  const replies: Reply[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, "");
    const code = Number(line.slice(0, 3));
    const message = line.slice(4);
    const data: string[] = [];
    if (line === "200 STATS" || line === "200 DEBUG") {
      while (lines[++i]!.replace(/\r$/, "") !== "END") data.push(lines[i]!.replace(/\r$/, ""));
    }
    replies.push({ code, message, lines: data });
  }
  return replies;
}

async function readAll(reader: ReplyReader, count: number): Promise<Reply[]> {
  const replies: Reply[] = [];
  for (let i = 0; i < count; i++) replies.push(await reader.read());
  return replies;
}

test("ReplyReader.read() decodes every recorded transcript, whole and one byte at a time", async () => {
  let checked = 0;
  for (const dialect of ["original", "extended"]) {
    for (const name of await readdir(new URL(`${dialect}/`, FIXTURES))) {
      const text = await readFile(new URL(`${dialect}/${name}`, FIXTURES), "utf8");
      for (const conn of ["A", "B", "C", "D"]) {
        const lines = receivedLines(text, conn);
        if (lines.length === 0) continue;
        const expected = expectedReplies(lines);
        const data = bytes(lines.map((line) => `${line}\n`).join(""));
        for (const [how, chunks] of feedings(data)) {
          const reader = readerOf(chunks);
          assert.deepEqual(
            await readAll(reader, expected.length),
            expected,
            `${name} ${conn} ${how}`,
          );
          await assert.rejects(reader.read(), ConnectionClosedError);
          checked++;
        }
      }
    }
  }
  assert.ok(checked >= 2 * 26, `checked ${checked}`);
});

test("ReplyReader.read() accepts both \\r\\n and \\n line ends", async () => {
  const data = bytes("200 Acquired\r\n409 Unavailable\n200 OK\r\n403 not_locked\n");
  for (const [how, chunks] of feedings(data)) {
    const replies = await readAll(readerOf(chunks), 4);
    assert.deepEqual(
      replies.map((r) => [r.code, r.message]),
      [[200, "Acquired"], [409, "Unavailable"], [200, "OK"], [403, "not_locked"]],
      how,
    );
  }
});

test("ReplyReader.read() reads the original STATS block (\\r\\n) from the fixture", async () => {
  const data = await receivedBytes("original/stats.txt");
  assert.ok(data.includes(13), "the fixture's replies end in \\r\\n");
  for (const [how, chunks] of feedings(data)) {
    const replies = await readAll(readerOf(chunks), 4);
    const stats = replies[3]!;
    assert.deepEqual(stats, {
      code: 200,
      message: "STATS",
      lines: ["STAT clients 2", "STAT locks 2", "STAT monitoring 2"],
    }, how);
    assert.deepEqual(parseStats(stats), { clients: 2, locks: 2, monitoring: 2 });
  }
});

test("ReplyReader.read() reads the extended STATS block (\\n) from the fixture", async () => {
  for (const [how, chunks] of feedings(await receivedBytes("extended/stats.txt"))) {
    const replies = await readAll(readerOf(chunks), 4);
    assert.deepEqual(parseStats(replies[3]!), { clients: 2, locks: 2, monitoring: 2 }, how);
  }
});

test("ReplyReader.read() reads the DEBUG block from the fixture", async () => {
  for (const [how, chunks] of feedings(await receivedBytes("extended/debug_output.txt"))) {
    const replies = await readAll(readerOf(chunks), 4);
    const debug = replies[3]!;
    assert.equal(debug.code, 200, how);
    assert.equal(debug.message, "DEBUG", how);
    assert.equal(debug.lines.length, 5, how);
    assert.deepEqual(parseDebug(debug), {
      sessions: [
        { id: 1, disposeTimeout: 30000, disposeTimeoutId: null },
        { id: 2, disposeTimeout: 30000, disposeTimeoutId: null },
      ],
      locks: [
        { key: "v", holders: ["1"], value: "red" },
        { key: "d1", holders: ["1"], value: null },
      ],
      requests: [{ session: "2", key: "d1" }],
    }, how);
  }
});

test("ReplyReader.read() returns a bare code with an empty message", async () => {
  const replies = await readAll(readerOf([bytes("200\n201 \n202  two spaces\n")]), 3);
  assert.deepEqual(replies, [
    { code: 200, message: "", lines: [] },
    { code: 201, message: "", lines: [] },
    { code: 202, message: " two spaces", lines: [] },
  ]);
});

test("ReplyReader.read() rejects a line without a 3-digit code with ProtocolError", async () => {
  const malformed = [
    "20 OK",
    "2000 OK",
    "abc",
    "",
    "200OK",
    " 200 OK",
    "2a0 OK",
    "\u0662\u0660\u0660 OK",
    "200\tOK",
    "STAT clients 2",
  ];
  for (const line of malformed) {
    for (const [how, chunks] of feedings(bytes(`200 OK\n${line}\n200 OK\n`))) {
      const source = sourceOf(chunks);
      const reader = new ReplyReader(source.stream);
      assert.deepEqual(await reader.read(), { code: 200, message: "OK", lines: [] });
      await assert.rejects(reader.read(), ProtocolError, `${JSON.stringify(line)} ${how}`);
      assert.ok(source.cancelled, "the stream is released");
    }
  }
});

test("ReplyReader.read() keeps failing with the same error after a ProtocolError", async () => {
  const reader = readerOf([bytes("hello\n200 OK\n")]);
  const first = await reader.read().catch((error: unknown) => error);
  assert.ok(first instanceof ProtocolError);
  await assert.rejects(reader.read(), (error) => error === first);
});

test("ReplyReader.read() rejects an over-long line with ProtocolError", async () => {
  const data = bytes(`200 ${"x".repeat(100)}\n200 OK\n`);
  for (const [how, chunks] of feedings(data)) {
    await assert.rejects(readerOf(chunks, { maxLineLength: 16 }).read(), ProtocolError, how);
  }
  // Exactly at the limit is fine, also with \r\n.
  const reader = readerOf([bytes(`200 ${"x".repeat(12)}\r\n`)], { maxLineLength: 16 });
  assert.equal((await reader.read()).message, "x".repeat(12));
});

test("ReplyReader.read() accepts a 1 MiB line by default and rejects one byte more", async () => {
  assert.equal(DEFAULT_MAX_LINE_LENGTH, 1024 * 1024);
  const message = "x".repeat(DEFAULT_MAX_LINE_LENGTH - 4);
  const reply = await readerOf([bytes(`409 ${message}\n`)]).read();
  assert.equal(reply.message.length, message.length);
  await assert.rejects(readerOf([bytes(`409 ${message}x\n`)]).read(), ProtocolError);
});

test("ReplyReader.read() stops reading an endless line at the limit", async () => {
  const chunk = new Uint8Array(1000).fill(120);
  let served = 0;
  const endless = {
    *[Symbol.iterator](): Generator<Uint8Array> {
      for (;;) {
        served += chunk.length;
        yield chunk;
      }
    },
  };
  const source = sourceOf(endless);
  const reader = new ReplyReader(source.stream, { maxLineLength: 10_000 });
  await assert.rejects(reader.read(), /Reply line too long: more than 10000 bytes/);
  assert.ok(served <= 12_000, `read ${served} bytes`);
  assert.ok(source.cancelled, "the stream is released");
});

test("ReplyReader.read() rejects a block bigger than maxBlockBytes with ProtocolError", async () => {
  const data = bytes(`200 DEBUG\n${"REQUEST #1 k\n".repeat(100)}END\n`);
  await assert.rejects(readerOf([data], { maxBlockBytes: 500 }).read(), /Reply block too long/);
  assert.equal((await readerOf([data], { maxBlockBytes: 1200 }).read()).lines.length, 100);
});

test("ReplyReader.read() rejects with ConnectionClosedError on an empty stream", async () => {
  await assert.rejects(readerOf([]).read(), (error: unknown) => {
    assert.ok(error instanceof ConnectionClosedError);
    assert.equal(error.message, "Connection closed");
    return true;
  });
});

test("ReplyReader.read() rejects with ConnectionClosedError at EOF mid-line", async () => {
  for (const [how, chunks] of feedings(bytes("200 OK\n200 Acq"))) {
    const reader = readerOf(chunks);
    await reader.read();
    await assert.rejects(reader.read(), /Connection closed: in the middle of a reply/, how);
    await assert.rejects(reader.read(), ConnectionClosedError, how);
  }
});

test("ReplyReader.read() rejects with ConnectionClosedError at EOF mid-block", async () => {
  for (
    const text of ["200 STATS\nSTAT clients 1\n", "200 DEBUG\n", "200 STATS\nSTAT clients 1\nEN"]
  ) {
    for (const [how, chunks] of feedings(bytes(text))) {
      await assert.rejects(
        readerOf(chunks).read(),
        /Connection closed: in the middle of a reply/,
        `${JSON.stringify(text)} ${how}`,
      );
    }
  }
});

test("ReplyReader.read() rejects with ConnectionClosedError when the stream fails", async () => {
  const failure = new Error("connection reset");
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes("200 OK\n200 O"));
      controller.error(failure);
    },
  });
  const reader = new ReplyReader(stream);
  await assert.rejects(reader.read(), (error: unknown) => {
    assert.ok(error instanceof ConnectionClosedError);
    assert.equal(error.cause, failure);
    return true;
  });
});

test("ReplyReader.read() decodes UTF-8 split across chunks", async () => {
  const data = bytes("409 Already locked by #1 (héllo)\n200 🔒 ok\n");
  const split = data.indexOf(0xc3) + 1;
  const emoji = data.indexOf(0xf0) + 2;
  const feeds: [string, Uint8Array[]][] = [
    ["split in é", [data.subarray(0, split), data.subarray(split)]],
    ["split in 🔒", [data.subarray(0, emoji), data.subarray(emoji)]],
    ...feedings(data),
  ];
  for (const [how, chunks] of feeds) {
    const replies = await readAll(readerOf(chunks), 2);
    assert.deepEqual(replies.map((r) => r.message), ["Already locked by #1 (héllo)", "🔒 ok"], how);
  }
});

test("ReplyReader.read() replaces invalid UTF-8 with U+FFFD", async () => {
  const data = new Uint8Array([...bytes("409 a"), 0xff, 0xc3, ...bytes("b\n")]);
  assert.equal((await readerOf([data]).read()).message, "a\uFFFD\uFFFDb");
});

test("ReplyReader.read() reads no block when told so", async () => {
  // An original server lets a client pick its session id, even "STATS".
  const reader = readerOf([bytes("200 STATS\n200 OK\n")]);
  assert.deepEqual(await reader.read({ block: false }), { code: 200, message: "STATS", lines: [] });
  assert.deepEqual(await reader.read(), { code: 200, message: "OK", lines: [] });
});

test("ReplyReader.read() reads a block after any 200 when told so", async () => {
  const reader = readerOf([bytes('200 Whatever\na\nb\nEND\n400 Unknown command: "debug"\n')]);
  assert.deepEqual(await reader.read({ block: true }), {
    code: 200,
    message: "Whatever",
    lines: ["a", "b"],
  });
  assert.deepEqual(await reader.read({ block: true }), {
    code: 400,
    message: 'Unknown command: "debug"',
    lines: [],
  });
});

test("ReplyReader.read() serves concurrent calls in call order", async () => {
  for (
    const [how, chunks] of feedings(bytes("200 STATS\nSTAT clients 1\nEND\n409 Busy\n200 OK\n"))
  ) {
    const reader = readerOf(chunks);
    const replies = await Promise.all([reader.read(), reader.read(), reader.read()]);
    assert.deepEqual(replies.map((r) => r.code), [200, 409, 200], how);
    assert.deepEqual(replies[0]!.lines, ["STAT clients 1"], how);
  }
});

test("ReplyReader.cancel() releases the stream and fails pending and later reads", async () => {
  let cancelled: unknown = "not cancelled";
  const stream = new ReadableStream<Uint8Array>({
    pull() {
      // Never answers: the server is silent.
    },
    cancel(reason) {
      cancelled = reason;
    },
  }, { highWaterMark: 0 });
  const reader = new ReplyReader(stream);
  const pending = reader.read();
  await reader.cancel("closing");
  assert.equal(cancelled, "closing");
  await assert.rejects(pending, ConnectionClosedError);
  await assert.rejects(reader.read(), ConnectionClosedError);
  assert.equal(stream.locked, false);
  await reader.cancel("again");
});

test("ReplyReader rejects a limit that is not a positive whole number with RangeError", () => {
  const stream = new ReadableStream<Uint8Array>();
  for (const bad of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => new ReplyReader(stream, { maxLineLength: bad }), RangeError);
    assert.throws(() => new ReplyReader(stream, { maxBlockBytes: bad }), RangeError);
  }
  assert.equal(stream.locked, false);
});

function reply(message: string, lines: string[]): Reply {
  return { code: 200, message, lines };
}

test("parseStats() rejects a malformed or missing counter with ProtocolError", () => {
  assert.deepEqual(
    parseStats(
      reply("STATS", ["STAT clients 3", "STAT extra 9", "STAT locks 0", "STAT monitoring 1"]),
    ),
    { clients: 3, locks: 0, monitoring: 1 },
  );
  for (
    const lines of [
      ["STAT clients 2", "STAT locks 2"],
      ["STAT clients x", "STAT locks 2", "STAT monitoring 2"],
      ["STAT clients -1", "STAT locks 2", "STAT monitoring 2"],
      ["STAT clients 2", "STAT locks 2", "STAT monitoring 2", "garbage"],
    ]
  ) {
    assert.throws(() => parseStats(reply("STATS", lines)), ProtocolError, lines.join("|"));
  }
});

test("parseDebug() parses shared holders, values and opaque ids", () => {
  assert.deepEqual(
    parseDebug(reply("DEBUG", [
      'SESSION {"id":"aB-_9x","disposeTimeout":0,"disposeTimeoutId":1,"expiresIn":5}',
      "LOCK v #aB-_9x, #2, #3 (red)",
      "LOCK (odd)key #2",
      "LOCK k2 #2 (a)b)",
      "REQUEST #3 v",
      "SOMETHING new",
    ])),
    {
      sessions: [{ id: "aB-_9x", disposeTimeout: 0, disposeTimeoutId: 1, expiresIn: 5 }],
      locks: [
        { key: "v", holders: ["aB-_9x", "2", "3"], value: "red" },
        { key: "(odd)key", holders: ["2"], value: null },
        { key: "k2", holders: ["2"], value: "a)b" },
      ],
      requests: [{ session: "3", key: "v" }],
    },
  );
  assert.deepEqual(parseDebug(reply("DEBUG", [])), { sessions: [], locks: [], requests: [] });
});

test("parseDebug() rejects a SESSION line that is not a JSON object with ProtocolError", () => {
  for (const line of ["SESSION {id:1}", "SESSION ", "SESSION [1]", "SESSION null", "SESSION 3"]) {
    assert.throws(() => parseDebug(reply("DEBUG", [line])), ProtocolError, line);
  }
  const error = (() => {
    try {
      parseDebug(reply("DEBUG", ['SESSION {"id":1,"self":']));
    } catch (error) {
      return error;
    }
  })();
  assert.ok(error instanceof ProtocolError);
  assert.ok(error.cause instanceof SyntaxError);
});

test("parseDebug() rejects a malformed LOCK or REQUEST line with ProtocolError", () => {
  for (
    const line of [
      "LOCK ",
      "LOCK k 1",
      "LOCK k #1,#2",
      "REQUEST 1 k",
      "REQUEST #1",
      "REQUEST #1 k x",
    ]
  ) {
    assert.throws(() => parseDebug(reply("DEBUG", [line])), ProtocolError, line);
  }
});

test("parseDebug: peer and name are strings or absent (older servers print neither)", () => {
  const info = parseDebug({
    code: 200,
    message: "DEBUG",
    lines: [
      'SESSION {"id":1,"disposeTimeout":30000,"disposeTimeoutId":null}',
      'SESSION {"id":2,"peer":"10.0.0.7:5000","name":"w"}',
      'SESSION {"id":3,"peer":7,"name":null}',
    ],
  });
  assert.deepEqual(info.sessions, [
    { id: 1, disposeTimeout: 30000, disposeTimeoutId: null },
    { id: 2, peer: "10.0.0.7:5000", name: "w" },
    { id: 3 },
  ]);
});
