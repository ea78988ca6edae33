/**
 * Splits a byte stream into lines, with a maximum line length.
 *
 * Runtime-neutral: used by the bundled server to read commands and by the
 * client to read replies. Lines are decoded byte for byte (Latin-1), so any
 * byte sequence survives a round trip through {@linkcode encodeBinary}.
 *
 * @module
 */

/** Marks a line that was longer than the limit; its bytes were discarded. */
export const OVERLONG_LINE: unique symbol = Symbol("overlong line");

/** One item produced by {@linkcode LineSplitter.push}. */
export type SplitLine = string | typeof OVERLONG_LINE;

const LF = 10;
const CR = 13;

/**
 * Decodes bytes one character per byte (code points 0-255).
 *
 * @example
 * ```ts
 * decodeBinary(new Uint8Array([104, 105])); // "hi"
 * ```
 */
export function decodeBinary(
  bytes: Uint8Array,
  start = 0,
  end: number = bytes.length,
): string {
  let out = "";
  const step = 8192;
  for (let i = start; i < end; i += step) {
    out += String.fromCharCode.apply(
      null,
      bytes.subarray(i, Math.min(end, i + step)) as unknown as number[],
    );
  }
  return out;
}

/**
 * Encodes a string of code points 0-255 back into the bytes it was read from.
 *
 * @example
 * ```ts
 * encodeBinary("hi\n"); // Uint8Array [104, 105, 10]
 * ```
 */
export function encodeBinary(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/**
 * Turns chunks of bytes into lines ended by `\n` (a `\r` before it is
 * dropped). A line longer than `maxLineLength` bytes is reported once as
 * {@linkcode OVERLONG_LINE} and skipped up to its newline, holding at most
 * `maxLineLength` bytes in memory meanwhile.
 *
 * @example
 * ```ts
 * const lines: SplitLine[] = [];
 * const splitter = new LineSplitter(1024);
 * splitter.push(new TextEncoder().encode("200 OK\r\n4"), (l) => lines.push(l));
 * splitter.push(new TextEncoder().encode("09 Busy\n"), (l) => lines.push(l));
 * // lines: ["200 OK", "409 Busy"]
 * ```
 */
export class LineSplitter {
  readonly #max: number;
  /**
   * The start of a line whose end has not arrived yet: one buffer per
   * splitter, grown by doubling (at most `maxLineLength` + 1 bytes), so that
   * a line arriving a byte at a time costs its length, not a copy per chunk.
   */
  #pending: Uint8Array = EMPTY;
  #pendingLength = 0;
  #discarding = false;

  /** @param maxLineLength longest line accepted, in bytes, without its end */
  constructor(maxLineLength: number) {
    this.#max = maxLineLength;
  }

  /** Bytes held back while waiting for the end of a line. */
  get buffered(): number {
    return this.#pendingLength;
  }

  /** Feeds one chunk; `emit` is called for each complete line in it. */
  push(chunk: Uint8Array, emit: (line: SplitLine) => void): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(LF, start);
      if (nl === -1) {
        this.#keep(chunk, start, chunk.length, emit);
        return;
      }
      if (this.#discarding) {
        this.#discarding = false;
      } else if (this.#pendingLength === 0) {
        emit(this.#line(chunk, start, nl));
      } else {
        this.#keep(chunk, start, nl, emit);
        if (this.#discarding) {
          this.#discarding = false;
        } else {
          const length = this.#pendingLength;
          this.#pendingLength = 0;
          const line = this.#line(this.#pending, 0, length);
          // A buffer grown for a long line is not kept for the next ones.
          if (this.#pending.length > RETAINED) this.#pending = EMPTY;
          emit(line);
        }
      }
      start = nl + 1;
    }
  }

  #line(bytes: Uint8Array, start: number, end: number): SplitLine {
    if (end > start && bytes[end - 1] === CR) end--;
    return end - start > this.#max ? OVERLONG_LINE : decodeBinary(bytes, start, end);
  }

  #keep(chunk: Uint8Array, start: number, end: number, emit: (line: SplitLine) => void): void {
    const n = end - start;
    if (this.#discarding || n === 0) return;
    const length = this.#pendingLength + n;
    // One byte of slack for a `\r` that may end the line.
    if (length > this.#max + 1) {
      this.#pending = EMPTY;
      this.#pendingLength = 0;
      this.#discarding = true;
      emit(OVERLONG_LINE);
      return;
    }
    if (length > this.#pending.length) {
      const grown = new Uint8Array(
        Math.min(this.#max + 1, Math.max(length, 2 * this.#pending.length, 64)),
      );
      grown.set(this.#pending.subarray(0, this.#pendingLength));
      this.#pending = grown;
    }
    this.#pending.set(
      start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end),
      this.#pendingLength,
    );
    this.#pendingLength = length;
  }
}

const EMPTY = new Uint8Array(0);
/** Largest pending-line buffer kept once its line is complete. */
const RETAINED = 4096;

/**
 * Joins byte arrays (`length` is their total length); one part is returned as is.
 *
 * @example
 * ```ts
 * concat([new Uint8Array([1]), new Uint8Array([2, 3])], 3); // Uint8Array [1, 2, 3]
 * ```
 */
export function concat(parts: Uint8Array[], length: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
