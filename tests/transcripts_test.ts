/**
 * Replays every recorded transcript (tests/fixtures/{original,extended}) on
 * a fresh bundled server of that dialect: once with sequential ids, where
 * every byte must match the recording, and once with the default random ids,
 * where placeholders must still bind and match and the ids must be
 * unguessable (URL-safe, at least 16 characters = 96 bits in base64url).
 */

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { type Dialect, startServer } from "../src/server/mod.ts";
import { type EtcdCluster, startEtcd } from "./support/etcd.ts";
import { parseTranscript, replayTranscript, type Transcript } from "./support/transcript.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const EXPECTED_COUNTS: Readonly<Record<Dialect, number>> = { original: 11, extended: 15 };
const DIALECTS = Object.keys(EXPECTED_COUNTS) as Dialect[];
const RANDOM_ID = /^[A-Za-z0-9_-]{16,}$/;
/** Generous: the longest transcript takes a few seconds (Bun's default is 5 s). */
const TIMEOUT = { timeout: 60_000 };

interface Fixture {
  readonly dialect: Dialect;
  /** `dialect/file.txt`, relative to FIXTURES. */
  readonly path: string;
}

const fixtures: Fixture[] = [];
const listingErrors: string[] = [];
for (const dialect of DIALECTS) {
  try {
    const names = await readdir(new URL(`${dialect}/`, FIXTURES));
    for (const name of names.filter((n) => n.endsWith(".txt")).sort()) {
      fixtures.push({ dialect, path: `${dialect}/${name}` });
    }
  } catch (error) {
    listingErrors.push(`${dialect}: ${error}`);
  }
}

async function load(fixture: Fixture): Promise<Transcript> {
  // latin1: one character per byte, so lines keep their exact bytes.
  const text = await readFile(new URL(fixture.path, FIXTURES), "latin1");
  const transcript = parseTranscript(fixture.path, text);
  assert.equal(
    transcript.headers.get("dialect"),
    fixture.dialect,
    `${fixture.path}: its "# dialect:" header names another dialect than its folder`,
  );
  return transcript;
}

test("transcript fixtures are found: 11 original and 15 extended", () => {
  assert.deepEqual(listingErrors, []);
  for (const dialect of DIALECTS) {
    const count = fixtures.filter((f) => f.dialect === dialect).length;
    assert.equal(count, EXPECTED_COUNTS[dialect], `transcripts in fixtures/${dialect}/`);
  }
});

for (const fixture of fixtures) {
  test(
    `transcript ${fixture.path} replays byte for byte with sequential ids`,
    TIMEOUT,
    async () => {
      const transcript = await load(fixture);
      await using server = await startServer({
        port: 0,
        dialect: fixture.dialect,
        sequentialIds: true,
      });
      const { ids } = await replayTranscript(transcript, server.port, { sequentialIds: true });
      assert.ok(ids.size > 0, "the transcript binds at least one session id");
    },
  );

  test(`transcript ${fixture.path} replays with random URL-safe ids`, TIMEOUT, async () => {
    const transcript = await load(fixture);
    await using server = await startServer({ port: 0, dialect: fixture.dialect });
    const { ids } = await replayTranscript(transcript, server.port, { sequentialIds: false });
    assert.ok(ids.size > 0, "the transcript binds at least one session id");
    for (const [letter, id] of ids) {
      assert.match(id, RANDOM_ID, `{${letter}}: a random id is base64url of at least 96 bits`);
    }
    assert.equal(new Set(ids.values()).size, ids.size, "every session has its own id");
  });
}

/** One etcd for the transcripts replayed on the etcd store; each replay has its own prefix. */
let etcd: Promise<EtcdCluster> | null = null;
let replays = 0;
after(async () => {
  if (etcd !== null) await (await etcd).stop();
});

for (const fixture of fixtures) {
  test(`transcript ${fixture.path} replays on the etcd store (random ids)`, TIMEOUT, async () => {
    const transcript = await load(fixture);
    etcd ??= startEtcd();
    await using server = await startServer({
      port: 0,
      dialect: fixture.dialect,
      store: "etcd",
      etcdEndpoints: (await etcd).endpoints,
      etcdPrefix: `transcript-${replays++}/`,
    });
    const { ids } = await replayTranscript(transcript, server.port, { sequentialIds: false });
    assert.ok(ids.size > 0, "the transcript binds at least one session id");
    for (const [letter, id] of ids) {
      assert.match(id, RANDOM_ID, `{${letter}}: a random id is base64url of at least 96 bits`);
    }
    assert.equal(new Set(ids.values()).size, ids.size, "every session has its own id");
  });
}
