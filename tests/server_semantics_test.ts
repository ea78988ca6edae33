/**
 * Lock-table semantics on the memory store (tests/support/server_semantics.ts).
 *
 * @module
 */

import { defineServerSemantics } from "./support/server_semantics.ts";

defineServerSemantics("memory");
