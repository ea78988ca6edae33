/**
 * Lock-table semantics on the etcd store, two servers on one etcd
 * (tests/support/server_semantics.ts). etcd must be installed (`.ci/run`
 * installs it): without it these tests fail, they do not skip.
 *
 * @module
 */

import { defineServerSemantics } from "./support/server_semantics.ts";

defineServerSemantics("etcd");
