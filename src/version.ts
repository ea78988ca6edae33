/**
 * The package version, as `elock --version` prints it. It must equal the
 * `version` of deno.json, from which the npm package.json is written:
 * `deno task build:npm` refuses to build when the two differ, and a test
 * checks it.
 *
 * @module
 */

/**
 * The version of this package.
 *
 * @example
 * ```ts
 * console.log(`elock ${VERSION}`); // "elock 0.1.0"
 * ```
 */
export const VERSION = "0.1.0";
