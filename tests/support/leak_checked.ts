/**
 * `leakCheckedTest(name, fn)`: a test that must leave no timer, socket or
 * other resource behind. On Deno it is a `Deno.test` with the op and
 * resource sanitizers on (Deno's `node:test` runs without them); on Bun and
 * Node it is a `node:test` test.
 *
 * @module
 */

import { test } from "node:test";

interface DenoTest {
  test(options: {
    name: string;
    fn: () => Promise<void>;
    sanitizeOps: boolean;
    sanitizeResources: boolean;
  }): void;
}

/** Declares a test that fails on Deno when it leaks an async op or a resource. */
export function leakCheckedTest(name: string, fn: () => Promise<void>): void {
  const deno = (globalThis as { Deno?: DenoTest }).Deno;
  if (deno !== undefined) {
    deno.test({ name, fn, sanitizeOps: true, sanitizeResources: true });
  } else {
    test(name, fn);
  }
}
