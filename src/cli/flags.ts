/**
 * Command-line flag parsing on top of `node:util`'s `parseArgs` (available on
 * Node, Deno and Bun), with error messages of our own that read the same on
 * every runtime.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "./subcommand.ts";

/** One flag a subcommand accepts. */
export interface FlagSpec {
  /** `string` flags take a value (`--port 80` or `--port=80`); `boolean` ones do not. */
  readonly type: "string" | "boolean";
  /** A one-letter alias, e.g. `h` for `-h`. */
  readonly short?: string;
}

/** The flags that were given, by name, and the other arguments. */
export interface ParsedFlags<Spec extends Record<string, FlagSpec>> {
  /** The value of each flag given (the last one wins when repeated). */
  readonly values: {
    readonly [Name in keyof Spec]?: Spec[Name]["type"] extends "string" ? string : true;
  };
  /** Arguments that are not flags, in order (everything after `--` included). */
  readonly positionals: readonly string[];
}

/**
 * Parses `args` against `spec`.
 *
 * @param args the arguments to parse
 * @param spec the accepted flags, by long name
 * @returns the flags and positional arguments
 * @throws {UsageError} on an unknown flag, a missing value, or a value given to a boolean flag
 *
 * @example
 * ```ts
 * const { values } = parseFlags(["--port", "80"], { port: { type: "string" } });
 * values.port; // "80"
 * ```
 */
export function parseFlags<Spec extends Record<string, FlagSpec>>(
  args: readonly string[],
  spec: Spec,
): ParsedFlags<Spec> {
  const { tokens } = parseArgs({
    args: [...args],
    options: spec,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values: Record<string, string | true> = {};
  const positionals: string[] = [];
  for (const token of tokens) {
    if (token.kind === "positional") {
      positionals.push(token.value);
    } else if (token.kind === "option") {
      const flag = Object.hasOwn(spec, token.name) ? spec[token.name] : undefined;
      if (flag === undefined) throw new UsageError(`unknown option ${quote(token.rawName)}`);
      if (flag.type === "boolean") {
        if (token.value !== undefined) {
          throw new UsageError(`option --${token.name} takes no value`);
        }
        values[token.name] = true;
      } else {
        // parseArgs takes the next argument even when it looks like a flag; a
        // negative number (`--timeout -5`) is a value, for the range check to refuse.
        if (
          token.value === undefined ||
          (!token.inlineValue && token.value.startsWith("-") && !NEGATIVE.test(token.value))
        ) {
          throw new UsageError(`option --${token.name} needs a value`);
        }
        values[token.name] = token.value;
      }
    }
  }
  return { values: values as ParsedFlags<Spec>["values"], positionals };
}

/** A negative number, as a flag's value: `-5`, `-1.5`. */
const NEGATIVE = /^-[0-9]/;

/**
 * Reads a whole decimal number from a flag value.
 *
 * @param text the flag's value
 * @param min smallest accepted value
 * @param max largest accepted value
 * @returns the number, or `null` if `text` is not a whole number from `min` to `max`
 *
 * @example
 * ```ts
 * parseWholeNumber("8080", 0, 65535); // 8080
 * parseWholeNumber("1.5", 0, 65535); // null
 * ```
 */
export function parseWholeNumber(text: string, min: number, max: number): number | null {
  if (!/^[0-9]{1,16}$/.test(text)) return null;
  const n = Number(text);
  return n >= min && n <= max ? n : null;
}

/**
 * Reads the whole number of a numeric flag (or environment variable), or
 * throws the usage error that says what is wrong with it: a number outside
 * `min`-`max` (a negative one included) is "out of range", anything else
 * is "invalid".
 *
 * @param flag how the user named it, e.g. `--timeout` or `ELOCK_PORT`
 * @param text its value
 * @param min smallest accepted value
 * @param max largest accepted value
 * @param expected what is expected, for the message (default `a whole number MIN-MAX`)
 * @returns the number
 * @throws {UsageError} when `text` is not a whole number from `min` to `max`
 *
 * @example
 * ```ts
 * wholeNumberFlag("--port", "80", 1, 65535); // 80
 * wholeNumberFlag("--timeout", "-5", 0, 1000); // throws: --timeout "-5" is out of range (...)
 * ```
 */
export function wholeNumberFlag(
  flag: string,
  text: string,
  min: number,
  max: number,
  expected = `a whole number ${min}-${max}`,
): number {
  const n = parseWholeNumber(text, min, max);
  if (n !== null) return n;
  if (/^-?[0-9]+$/.test(text)) {
    throw new UsageError(`${flag} ${quote(text)} is out of range (expected ${expected})`);
  }
  throw new UsageError(`invalid ${flag} ${quote(text)} (expected ${expected})`);
}

/**
 * Throws a {@linkcode UsageError} for the first positional argument of a
 * command that takes none.
 *
 * @param positionals what {@linkcode parseFlags} found besides flags
 */
export function noPositionals(positionals: readonly string[]): void {
  const [first] = positionals;
  if (first !== undefined) throw new UsageError(`unexpected argument ${quote(first)}`);
}

/**
 * Quotes a user-supplied word for an error message (control characters escaped).
 *
 * @example
 * ```ts
 * quote("--bogus"); // "\"--bogus\""
 * ```
 */
export function quote(text: string): string {
  return JSON.stringify(text);
}
