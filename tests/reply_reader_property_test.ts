/**
 * Property-based tests of the reply reader (fast-check), without sockets:
 * any bytes, cut into any chunks, either parse or end in a
 * {@linkcode ProtocolError} (or a {@linkcode ConnectionClosedError} once the
 * stream is used up); no read hangs; the bytes held back for an unfinished
 * line never pass the line limit; and valid replies come back as sent. The
 * line splitter under it is checked against a model of what it must emit.
 *
 * Seeds: see tests/support/property.ts.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { type Reply, ReplyParser, ReplyReader } from "../src/protocol/reply_reader.ts";
import {
  decodeBinary,
  LineSplitter,
  OVERLONG_LINE,
  type SplitLine,
} from "../src/protocol/line_splitter.ts";
import { ConnectionClosedError, ProtocolError } from "../src/errors.ts";
import { propertyParameters } from "./support/property.ts";

const encoder = new TextEncoder();

/** Cuts `bytes` at the given fractions of its length (any order, repeats: empty chunks). */
function cut(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = cuts.map((f) => Math.floor(f * (bytes.length + 1))).sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const end of [...at, bytes.length]) {
    const stop = Math.min(Math.max(end, start), bytes.length);
    chunks.push(bytes.slice(start, stop));
    start = stop;
  }
  return chunks;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A pull-only stream over `chunks`; `onPull` runs before each chunk is handed out. */
function streamOf(chunks: Uint8Array[], onPull: (index: number) => void) {
  let next = 0;
  const source = {
    get pulled() {
      return next;
    },
    stream: new ReadableStream<Uint8Array>({
      pull(controller) {
        onPull(next);
        const chunk = chunks[next++];
        if (chunk === undefined) controller.close();
        else controller.enqueue(chunk);
      },
    }, { highWaterMark: 0 }),
  };
  return source;
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Awaits `promise`, failing if it has not settled within a few turns of the
 * event loop. The stream is in memory, so a read that needs nothing more
 * settles within one; more means the reader waits for bytes that will never
 * come.
 */
async function settled<T>(promise: Promise<T>, what: string): Promise<Settled<T>> {
  let done = false;
  const outcome = promise.then(
    (value): Settled<T> => (done = true, { ok: true, value }),
    (error: unknown): Settled<T> => (done = true, { ok: false, error }),
  );
  for (let turn = 0; turn < 10 && !done; turn++) {
    await Promise.race([outcome, new Promise((resolve) => setTimeout(resolve, 0))]);
  }
  if (!done) assert.fail(`${what} did not settle: the reader hangs`);
  return await outcome;
}

const LINE_END = fc.constantFrom("\n", "\r\n");

/** Byte fragments that come near what a server sends, and plain noise. */
function fragment(maxLineLength: number): fc.Arbitrary<Uint8Array> {
  const text = (arb: fc.Arbitrary<string>) => arb.map((s) => encoder.encode(s));
  return fc.oneof(
    { arbitrary: fc.uint8Array({ maxLength: 24 }), weight: 1 },
    {
      arbitrary: text(
        fc.tuple(fc.integer({ min: 0, max: 999 }), fc.string({ maxLength: 12 }), LINE_END)
          .map(([code, message, end]) => `${String(code).padStart(3, "0")} ${message}${end}`),
      ),
      weight: 12,
    },
    {
      arbitrary: text(fc.constantFrom(
        "200 STATS\n",
        "200 DEBUG\n",
        "STAT clients 1\n",
        "END\n",
        "END\r\n",
        "\n",
        "\r",
        "\r\n",
        "200\n",
        "20",
        "0 OK\n",
        "409 \n",
      )),
      weight: 2,
    },
    {
      arbitrary: text(
        fc.tuple(fc.integer({ min: maxLineLength - 2, max: maxLineLength * 3 }), LINE_END)
          .map(([n, end]) => `200 ${"x".repeat(n)}${end}`),
      ),
      weight: 3,
    },
    { arbitrary: text(fc.string({ unit: "binary", maxLength: 8 })), weight: 1 },
  );
}

test(
  "ReplyReader: any bytes in any chunks parse or end in ProtocolError, never hang, hold back at most a line",
  {
    timeout: 60_000,
  },
  async () => {
    const input = fc.integer({ min: 16, max: 64 }).chain((maxLineLength) =>
      fc.record({
        maxLineLength: fc.constant(maxLineLength),
        maxBlockBytes: fc.integer({ min: 1, max: 200 }),
        bytes: fc.array(fragment(maxLineLength), { maxLength: 30 }).map(concat),
        cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 60 }),
        blocks: fc.array(fc.constantFrom(undefined, true, false), { minLength: 1, maxLength: 5 }),
      })
    );
    await fc.assert(
      fc.asyncProperty(input, async ({ maxLineLength, maxBlockBytes, bytes, cuts, blocks }) => {
        const chunks = cut(bytes, cuts);
        let most = 0;
        let reader: ReplyReader | null = null;
        const source = streamOf(chunks, () => {
          most = Math.max(most, reader?.buffered ?? 0);
        });
        reader = new ReplyReader(source.stream, { maxLineLength, maxBlockBytes });
        const newlines = bytes.filter((b) => b === 10).length;
        let replies = 0;
        let failure: unknown = null;
        for (let i = 0; failure === null; i++) {
          assert.ok(replies <= newlines, `${replies} replies from ${newlines} line ends`);
          const block = blocks[i % blocks.length];
          const read = await settled(
            reader.read(block === undefined ? {} : { block }),
            `read #${i}`,
          );
          most = Math.max(most, reader.buffered);
          if (read.ok) {
            replies++;
            checkReply(read.value, block);
          } else {
            failure = read.error;
          }
        }
        assert.ok(
          failure instanceof ProtocolError || failure instanceof ConnectionClosedError,
          `unexpected failure: ${String(failure)}`,
        );
        if (failure instanceof ConnectionClosedError) {
          assert.equal(source.pulled, chunks.length + 1, "closed only once the stream ended");
        }
        // Final: the next read fails the same way, at once.
        const again = await settled(reader.read(), "the read after the failure");
        assert.ok(!again.ok && again.error === failure);
        assert.ok(most <= maxLineLength + 1, `held back ${most} bytes, limit ${maxLineLength}`);
      }),
      propertyParameters(300),
    );
  },
);

test(
  "ReplyParser (pushed bytes) gives exactly what ReplyReader reads, then the same kind of error",
  { timeout: 60_000 },
  async () => {
    const input = fc.integer({ min: 16, max: 64 }).chain((maxLineLength) =>
      fc.record({
        maxLineLength: fc.constant(maxLineLength),
        maxBlockBytes: fc.integer({ min: 1, max: 200 }),
        bytes: fc.array(fragment(maxLineLength), { maxLength: 30 }).map(concat),
        cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 60 }),
        parserCuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 60 }),
      })
    );
    await fc.assert(
      fc.asyncProperty(input, async ({ maxLineLength, maxBlockBytes, bytes, cuts, parserCuts }) => {
        const limits = { maxLineLength, maxBlockBytes };
        const reader = new ReplyReader(streamOf(cut(bytes, cuts), () => {}).stream, limits);
        const read: Reply[] = [];
        let readError: unknown = null;
        while (readError === null) {
          const next = await settled(reader.read(), `read #${read.length}`);
          if (next.ok) read.push(next.value);
          else readError = next.error;
        }
        const pushed: Reply[] = [];
        const errors: unknown[] = [];
        const parser = new ReplyParser((r) => pushed.push(r), (e) => errors.push(e), limits);
        for (const chunk of cut(bytes, parserCuts)) parser.push(chunk);
        parser.end();
        parser.push(encoder.encode("200 OK\n")); // after the end: ignored
        assert.deepEqual(
          pushed.map((r) => ({ ...r, lines: [...r.lines] })),
          read.map((r) => ({ ...r, lines: [...r.lines] })),
        );
        assert.equal(errors.length, 1, "one error, once");
        const [error] = errors;
        assert.equal((error as Error).constructor, (readError as Error).constructor);
        assert.equal((error as Error).message, (readError as Error).message);
      }),
      propertyParameters(300),
    );
  },
);

function checkReply(reply: Reply, block: boolean | undefined): void {
  assert.ok(Number.isInteger(reply.code) && reply.code >= 0 && reply.code <= 999);
  assert.equal(typeof reply.message, "string");
  assert.ok(!/[\r\n]/.test(reply.message) || reply.message.includes("\r"), "one line");
  const mayHaveBlock = reply.code === 200 &&
    (block ?? (reply.message === "STATS" || reply.message === "DEBUG"));
  if (!mayHaveBlock) assert.deepEqual(reply.lines, []);
  for (const line of reply.lines) assert.notEqual(line, "END");
}

/** A reply as a server would send it. */
const validReply: fc.Arbitrary<Reply> = fc.oneof(
  fc.record({
    code: fc.integer({ min: 100, max: 599 }),
    message: fc.string({ unit: "grapheme", maxLength: 40 })
      .filter((m) => !/[\r\n]/.test(m) && m !== "STATS" && m !== "DEBUG"),
    lines: fc.constant([] as string[]),
  }),
  fc.record({
    code: fc.constant(200),
    message: fc.constantFrom("STATS", "DEBUG"),
    lines: fc.array(
      fc.string({ unit: "grapheme", maxLength: 30 }).filter((l) =>
        !/[\r\n]/.test(l) && l !== "END"
      ),
      { maxLength: 6 },
    ),
  }),
);

test("ReplyReader: valid replies, any line ends, any chunks, come back as sent", {
  timeout: 60_000,
}, async () => {
  const input = fc.record({
    replies: fc.array(fc.tuple(validReply, LINE_END), { maxLength: 12 }),
    cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 16 }),
  });
  await fc.assert(
    fc.asyncProperty(input, async ({ replies, cuts }) => {
      const wire = replies.map(([r, end]) => {
        const first = r.message === "" ? String(r.code) : `${r.code} ${r.message}`;
        const block = r.message === "STATS" || r.message === "DEBUG"
          ? [...r.lines, "END"].map((l) => l + end).join("")
          : "";
        return first + end + block;
      }).join("");
      const reader = new ReplyReader(streamOf(cut(encoder.encode(wire), cuts), () => {}).stream);
      for (const [i, [expected]] of replies.entries()) {
        const read = await settled(reader.read(), `read #${i}`);
        assert.ok(read.ok, `reply #${i} failed: ${read.ok ? "" : String(read.error)}`);
        // fast-check's records have no prototype: compare plain copies.
        assert.deepEqual(read.value, { ...expected, lines: [...expected.lines] });
      }
      const end = await settled(reader.read(), "the read at the end");
      assert.ok(!end.ok && end.error instanceof ConnectionClosedError);
      assert.equal(end.error.message, "Connection closed");
    }),
    propertyParameters(300),
  );
});

/** What a {@linkcode LineSplitter} must emit for `bytes`, however they are cut. */
function modelLines(bytes: Uint8Array, max: number): SplitLine[] {
  const lines: SplitLine[] = [];
  let start = 0;
  for (let nl = bytes.indexOf(10); nl !== -1; nl = bytes.indexOf(10, start)) {
    let end = nl;
    if (end > start && bytes[end - 1] === 13) end--;
    lines.push(end - start > max ? OVERLONG_LINE : decodeBinary(bytes, start, end));
    start = nl + 1;
  }
  // An unfinished line is reported as soon as it cannot fit any more.
  if (bytes.length - start > max + 1) lines.push(OVERLONG_LINE);
  return lines;
}

test("LineSplitter: any chunks give the model's lines, holding back at most the limit + 1", () => {
  const input = fc.integer({ min: 1, max: 40 }).chain((max) =>
    fc.record({
      max: fc.constant(max),
      bytes: fc.array(
        fc.oneof(
          fc.uint8Array({ maxLength: 2 * max + 4 }),
          fc.constantFrom(new Uint8Array([10]), new Uint8Array([13]), new Uint8Array([13, 10])),
          fc.integer({ min: max - 1, max: max + 2 }).map((n) => new Uint8Array(n).fill(120)),
        ),
        { maxLength: 20 },
      ).map(concat),
      cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 30 }),
    })
  );
  fc.assert(
    fc.property(input, ({ max, bytes, cuts }) => {
      const splitter = new LineSplitter(max);
      const lines: SplitLine[] = [];
      for (const chunk of cut(bytes, cuts)) {
        splitter.push(chunk, (line) => lines.push(line));
        assert.ok(splitter.buffered <= max + 1, `held back ${splitter.buffered}, limit ${max}`);
      }
      assert.deepEqual(lines, modelLines(bytes, max));
    }),
    propertyParameters(500),
  );
});
