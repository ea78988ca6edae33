/**
 * `socketTransport(connect)` over TLS inside workerd, through Miniflare:
 * `connect()` of `cloudflare:sockets` with `secureTransport: "on"`, against
 * the bundled server with a certificate made at run time.
 *
 * workerd trusts the CAs Miniflare gives its outbound network, and Miniflare
 * adds those of `NODE_EXTRA_CA_CERTS` when it is loaded: this file writes
 * its throwaway CA to a file and names it there before the first Worker
 * starts (the harness imports Miniflare then). Run by the `workerd` pass of
 * scripts/test.ts, in a process of its own.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { startServer } from "../../src/server/mod.ts";
import { makeCertificates, type TestCertificates } from "../support/tls_cert.ts";
import { withWorker } from "./harness.ts";

/**
 * The Worker. `GET /?port=N&scenario=session` connects with `tls: true`,
 * locks, checks, unlocks; `scenario=connect` only connects with `tls: true`.
 * Each outcome is `{ ok: value }` or `{ error, message, cause }`.
 */
const WORKER_SOURCE = `
import { connect } from "cloudflare:sockets";
import { ELockClient, socketTransport } from "../../mod.js";

async function outcome(fn) {
  try {
    return { ok: await fn() };
  } catch (error) {
    const report = { error: error?.name ?? String(error), message: String(error?.message ?? "") };
    if (error?.cause !== undefined) report.cause = String(error.cause?.message ?? error.cause);
    return report;
  }
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const port = Number(url.searchParams.get("port"));
    const options = { port, transport: socketTransport(connect), tls: true };
    switch (url.searchParams.get("scenario")) {
      case "session":
        return Response.json(await outcome(async () => {
          const a = await ELockClient.connect(options);
          const b = await ELockClient.connect(options);
          try {
            return {
              lockA: await a.lock("k"),
              lockB: await b.lock("k"),
              stats: await a.stats(),
              unlockA: await a.unlock("k"),
              lockB2: await b.lock("k"),
            };
          } finally {
            await a.close();
            await b.close();
          }
        }));
      case "connect":
        return Response.json(await outcome(async () => {
          const client = await ELockClient.connect(options);
          await client.close();
          return "connected";
        }));
      default:
        return new Response("unknown scenario", { status: 400 });
    }
  },
};
`;

type Outcome<T> = { ok: T } | { error: string; message: string; cause?: string };

/** The trusted CA's certificates (made once), written where Miniflare reads them. */
let trusted: Promise<TestCertificates> | null = null;
function trustedCertificates(): Promise<TestCertificates> {
  trusted ??= (async () => {
    const certs = await makeCertificates();
    const dir = await mkdtemp(join(tmpdir(), "elock-workerd-tls-"));
    const file = join(dir, "ca.pem");
    await writeFile(file, certs.caCert);
    process.env.NODE_EXTRA_CA_CERTS = file;
    process.once("exit", () => void rm(dir, { recursive: true, force: true }));
    return certs;
  })();
  return trusted;
}

test("socketTransport with tls: true talks TLS to the TLS server from inside workerd", async () => {
  const certs = await trustedCertificates();
  await using server = await startServer({ port: 0, tls: { cert: certs.cert, key: certs.key } });
  await withWorker(WORKER_SOURCE, async (get) => {
    const outcome = await get(`port=${server.port}&scenario=session`) as Outcome<unknown>;
    assert.ok("ok" in outcome, `the Worker's session failed: ${JSON.stringify(outcome)}`);
    assert.deepEqual(outcome.ok, {
      lockA: true,
      lockB: false,
      stats: { clients: 2, locks: 1, monitoring: 2 },
      unlockA: true,
      lockB2: true,
    });
  });
});

test("socketTransport with tls: true rejects a certificate workerd does not trust", async () => {
  await trustedCertificates();
  const stranger = await makeCertificates();
  await using server = await startServer({
    port: 0,
    tls: { cert: stranger.cert, key: stranger.key },
  });
  await withWorker(WORKER_SOURCE, async (get) => {
    const outcome = await get(`port=${server.port}&scenario=connect`) as Outcome<unknown>;
    assert.ok("error" in outcome, `connected anyway: ${JSON.stringify(outcome)}`);
    assert.equal(outcome.error, "ConnectionClosedError", outcome.message);
    assert.match(
      outcome.message,
      new RegExp(`^Cannot connect to 127\\.0\\.0\\.1:${server.port}: `),
    );
  });
});

test("socketTransport with tls: true opens with a TLS ClientHello on the wire", async () => {
  await trustedCertificates();
  const first: Buffer[] = [];
  const raw = net.createServer((socket) => {
    socket.once("data", (chunk: Buffer) => {
      first.push(chunk);
      socket.destroy();
    });
    socket.on("error", () => {});
  });
  raw.listen(0, "127.0.0.1");
  await once(raw, "listening");
  try {
    const port = (raw.address() as net.AddressInfo).port;
    await withWorker(WORKER_SOURCE, async (get) => {
      const outcome = await get(`port=${port}&scenario=connect`) as Outcome<unknown>;
      assert.ok("error" in outcome, `connected anyway: ${JSON.stringify(outcome)}`);
      assert.equal(outcome.error, "ConnectionClosedError", outcome.message);
    });
    assert.equal(first.length, 1, "the Worker sent bytes");
    const hello = first[0]!;
    // A TLS record of type handshake (22), version 3.x, holding a ClientHello (1).
    assert.equal(hello[0], 22);
    assert.equal(hello[1], 3);
    assert.equal(hello[5], 1);
  } finally {
    raw.close();
  }
});
