/**
 * Checks of what callers pass: options objects (no unknown names, every
 * value of the type it must have) and the values in them. A wrong type is a
 * `TypeError` that says what was given and what is wanted; a number out of
 * range, a `RangeError`. They run before anything is sent.
 *
 * @module
 */

import type { AcquireOptions, LockOptions } from "./options.ts";

/** `the string "5s"`, `the number -1`, `null`, `an array`, ...: what was given, for a message. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "string":
      return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
    case "number":
      return `the number ${String(value)}`;
    case "bigint":
      return `the bigint ${String(value)}n`;
    case "boolean":
      return `the boolean ${String(value)}`;
    case "symbol":
      return "a symbol";
    case "function":
      return "a function";
    default:
      return "an object";
  }
}

/** The known name closest to `name` (a typo of it), if any. */
function closest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        previous[j]! + 1,
        row[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = row;
  }
  return previous[b.length]!;
}

/**
 * Checks that `options` is an options object (or `undefined`) whose names
 * are all in `known`.
 *
 * @param call the call, for messages: `lock()`, `ELockClient.connect()`
 * @param options what was passed
 * @param known the option names the call takes
 * @param number when a number was passed instead of the options object: the
 *   option it must be (e.g. `timeout`), for a message that shows how
 * @throws {TypeError} it is not an object, or has a name not in `known`
 */
export function checkOptions(
  call: string,
  options: unknown,
  known: readonly string[],
  number?: string,
): void {
  if (options === undefined) return;
  if (typeof options === "number" && number !== undefined) {
    throw new TypeError(
      `${call}: options must be an object, got the number ${String(options)}; ` +
        `pass { ${number}: ${String(options)} }`,
    );
  }
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`${call}: options must be an object, got ${describe(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    const near = closest(name, known);
    throw new TypeError(
      `${call}: unknown option ${JSON.stringify(name)}` +
        (near === undefined ? "" : ` (did you mean ${JSON.stringify(near)}?)`) +
        `; the options are: ${known.join(", ")}`,
    );
  }
}

/**
 * Checks a wait in ms: `undefined`, or a number from 0 (`Infinity` included).
 *
 * @throws {TypeError} it is not a number
 * @throws {RangeError} it is negative or NaN
 */
export function checkWait(call: string, name: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== "number") {
    throw new TypeError(
      `${call}: ${name} must be a number of ms (or Infinity), got ${describe(value)}`,
    );
  }
  if (!(value >= 0)) {
    throw new RangeError(`${call}: ${name} must be 0 or more ms (or Infinity), got ${value}`);
  }
}

/**
 * Checks that `value` is `undefined` or a number (its range is for the caller to check).
 *
 * @throws {TypeError} it is something else
 */
export function checkNumber(call: string, name: string, value: unknown, wanted: string): void {
  if (value !== undefined && typeof value !== "number") {
    throw new TypeError(`${call}: ${name} must be ${wanted}, got ${describe(value)}`);
  }
}

/**
 * Checks that `value` is `undefined` or of the `typeof` type `type`.
 *
 * @throws {TypeError} it is something else
 */
export function checkType(
  call: string,
  name: string,
  value: unknown,
  type: "string" | "boolean" | "object" | "function",
  wanted: string,
): void {
  if (value === undefined) return;
  if (typeof value !== type || value === null) {
    throw new TypeError(`${call}: ${name} must be ${wanted}, got ${describe(value)}`);
  }
}

/**
 * Checks that `value` is `undefined` or an `AbortSignal` (by its shape, so
 * that a signal of another realm passes).
 *
 * @throws {TypeError} it is something else
 */
export function checkSignal(call: string, value: unknown): void {
  if (value === undefined) return;
  const signal = value as Partial<AbortSignal> | null;
  if (
    typeof value !== "object" || signal === null || typeof signal.aborted !== "boolean" ||
    typeof signal.addEventListener !== "function"
  ) {
    throw new TypeError(`${call}: signal must be an AbortSignal, got ${describe(value)}`);
  }
}

/** The names of `LockOptions` (every one: the type says so). */
export const LOCK_OPTIONS: readonly string[] = Object.keys(
  { timeout: true, signal: true } satisfies { [K in keyof LockOptions]-?: true },
);

/** The names of `AcquireOptions`. */
export const ACQUIRE_OPTIONS: readonly string[] = Object.keys(
  {
    timeout: true,
    signal: true,
    value: true,
    within: true,
    fence: true,
  } satisfies { [K in keyof AcquireOptions]-?: true },
);

/**
 * Checks the options of `lock()` and `lockValue()` (and, with `acquire`,
 * the further ones of `acquire()` and `withLock()`), before anything is
 * sent.
 *
 * @throws {TypeError} not an options object, an unknown name, a wrong type
 * @throws {RangeError} a negative or NaN timeout
 */
export function checkLockOptions(call: string, options: unknown, acquire: boolean): void {
  checkOptions(call, options, acquire ? ACQUIRE_OPTIONS : LOCK_OPTIONS, "timeout");
  if (options === undefined) return;
  const given = options as Record<string, unknown>;
  checkWait(call, "timeout", given.timeout);
  checkSignal(call, given.signal);
  if (!acquire) return;
  checkType(call, "value", given.value, "string", "a string");
  checkType(call, "fence", given.fence, "boolean", "a boolean");
}
