/**
 * Where the package pass (scripts/package_pass.ts) installed the package:
 * the temporary project (`ELOCK_PACKAGE_PROJECT`) and the repository
 * (`ELOCK_REPO_ROOT`, for its tools).
 *
 * @module
 */

import { join } from "node:path";
import process from "node:process";

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(
      `${name} is not set: tests/package/ runs in the package pass of deno task test`,
    );
  }
  return value;
}

/** The temporary project the packed tarball is installed in. */
export const PROJECT: string = required("ELOCK_PACKAGE_PROJECT");

/** The repository root. */
export const REPO: string = required("ELOCK_REPO_ROOT");

/** The installed package's folder. */
export const INSTALLED: string = join(PROJECT, "node_modules", "@x", "elock");
