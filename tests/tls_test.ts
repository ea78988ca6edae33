/**
 * TLS end to end: the bundled server with a certificate made at run time
 * (a throwaway CA and a server certificate it signed), and the client over
 * every transport the running runtime has (Node `tls` on all three, plus
 * `Deno.connectTls`/`Deno.startTls` on Deno and `Bun.connect` on Bun). The
 * server side runs on the runtime's own listener: `tls.createServer` on
 * Node, `Deno.listenTls` on Deno, `Bun.listen` with `tls` on Bun.
 *
 * `socketTransport` is covered here by what it hands to its `connect`
 * function, and in workerd by tests/workerd/socket_transport_tls_test.ts.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectionClosedError,
  ELockClient,
  ProtocolError,
  type SocketConnectOptions,
  type SocketLike,
  socketTransport,
  type Transport,
} from "../mod.ts";
import { startServer } from "../src/server/mod.ts";
import { makeCertificates, type TestCertificates } from "./support/tls_cert.ts";
import { TRANSPORTS } from "./support/transports.ts";

/** Made once per file: CA-signed, for `localhost`, `127.0.0.1` and `::1`. */
let loopback: Promise<TestCertificates> | null = null;
function loopbackCertificates(): Promise<TestCertificates> {
  return loopback ??= makeCertificates();
}

/** A certificate that names only `elock.test`: it matches no address connected to. */
let named: Promise<TestCertificates> | null = null;
function namedCertificates(): Promise<TestCertificates> {
  return named ??= makeCertificates({ dns: ["elock.test"] });
}

for (const [name, make] of TRANSPORTS) {
  test(`${name} transport over TLS: lock, contend, unlock against the TLS server`, async () => {
    const certs = await loopbackCertificates();
    await using server = await startServer({ port: 0, tls: { cert: certs.cert, key: certs.key } });
    const options = { port: server.port, transport: make(), tls: { caCerts: [certs.caCert] } };
    await using a = await ELockClient.connect(options);
    await using b = await ELockClient.connect({ ...options, transport: make() });
    assert.equal(await a.lock("k"), true);
    assert.equal(await b.lock("k"), false);
    assert.equal(await a.unlock("k"), true);
    assert.equal(await b.lock("k", { timeout: 5000 }), true);
    assert.equal(await a.lockValue("v", "red"), true);
    assert.equal(await b.lockValue("v", "red"), true);
    assert.deepEqual(await a.stats(), { clients: 2, locks: 2, monitoring: 2 });
  });

  test(`${name} transport over TLS: a 1 MB debug reply arrives whole`, {
    timeout: 60_000,
  }, async () => {
    const certs = await loopbackCertificates();
    await using server = await startServer({ port: 0, tls: { cert: certs.cert, key: certs.key } });
    await using client = await ELockClient.connect({
      port: server.port,
      transport: make(),
      tls: { caCerts: [certs.caCert] },
    });
    const key = (i: number) => `key-${i}-${"x".repeat(500)}`;
    const locked = await Promise.all(Array.from({ length: 2000 }, (_, i) => client.lock(key(i))));
    assert.ok(locked.every((ok) => ok));
    const info = await client.debug();
    assert.equal(info.locks.length, 2000);
    assert.equal(info.locks[1999]!.key, key(1999));
  });

  test(`${name} transport over TLS: an untrusted certificate rejects connect() with the cause`, async () => {
    const certs = await loopbackCertificates();
    await using server = await startServer({ port: 0, tls: { cert: certs.cert, key: certs.key } });
    for (const tls of [true, { caCerts: [(await namedCertificates()).caCert] }]) {
      await assert.rejects(
        ELockClient.connect({ port: server.port, transport: make(), tls }),
        (error: unknown) => {
          assert.ok(error instanceof ConnectionClosedError, String(error));
          assert.match(
            error.message,
            new RegExp(`^Cannot connect to 127\\.0\\.0\\.1:${server.port}: `),
          );
          assert.ok(error.cause instanceof Error, `cause: ${String(error.cause)}`);
          return true;
        },
      );
    }
    // The server is unharmed: a client that trusts the CA gets through.
    await using client = await ELockClient.connect({
      port: server.port,
      transport: make(),
      tls: { caCerts: [certs.caCert] },
    });
    assert.equal(await client.lock("after"), true);
  });

  test(`${name} transport over TLS: serverName picks the name the certificate must carry`, async () => {
    const certs = await namedCertificates();
    await using server = await startServer({ port: 0, tls: { cert: certs.cert, key: certs.key } });
    const caCerts = [certs.caCert];
    // Connecting to 127.0.0.1, the certificate (for elock.test) does not match...
    await assert.rejects(
      ELockClient.connect({ port: server.port, transport: make(), tls: { caCerts } }),
      ConnectionClosedError,
    );
    // ...nor with another name...
    await assert.rejects(
      ELockClient.connect({
        port: server.port,
        transport: make(),
        tls: { caCerts, serverName: "other.test" },
      }),
      ConnectionClosedError,
    );
    // ...but it does with the name it carries.
    await using client = await ELockClient.connect({
      port: server.port,
      transport: make(),
      tls: { caCerts, serverName: "elock.test" },
    });
    assert.equal(await client.lock("k"), true);
  });

  test(`${name} transport: a plain client of the TLS server fails, a TLS client of a plain one too`, async () => {
    const certs = await loopbackCertificates();
    await using tlsServer = await startServer({
      port: 0,
      tls: { cert: certs.cert, key: certs.key },
    });
    // connect() asks the session id: the TLS server cannot answer a plain client.
    const plain = ELockClient.connect({
      port: tlsServer.port,
      transport: make(),
      commandTimeout: 20_000,
    });
    await assert.rejects(plain, (error: unknown) => {
      assert.ok(
        error instanceof ConnectionClosedError || error instanceof ProtocolError,
        String(error),
      );
      return true;
    });
    await using plainServer = await startServer({ port: 0 });
    await assert.rejects(
      ELockClient.connect({
        port: plainServer.port,
        transport: make(),
        tls: { caCerts: [certs.caCert] },
        signal: AbortSignal.timeout(30_000),
      }),
      ConnectionClosedError,
    );
    // Both servers still serve their own kind of client.
    await using secure = await ELockClient.connect({
      port: tlsServer.port,
      transport: make(),
      tls: { caCerts: [certs.caCert] },
    });
    assert.equal(await secure.lock("k"), true);
    await using clear = await ELockClient.connect({ port: plainServer.port, transport: make() });
    assert.equal(await clear.lock("k"), true);
  });
}

test("connect() rejects a malformed tls option with a TypeError, before connecting", async () => {
  let connects = 0;
  const transport: Transport = {
    connect() {
      connects++;
      return Promise.reject(new Error("not reached"));
    },
  };
  const bad: unknown[] = [
    "yes",
    1,
    { caCerts: "-----BEGIN CERTIFICATE-----" },
    { caCerts: ["not a PEM"] },
    { serverName: "" },
    { serverName: 7 },
  ];
  for (const tls of bad) {
    await assert.rejects(
      ELockClient.connect({ port: 1, transport, tls: tls as never }),
      TypeError,
      JSON.stringify(tls),
    );
  }
  assert.equal(connects, 0);
});

test("startServer() rejects a tls option that is not PEM cert and key", async () => {
  for (const tls of [{ cert: "x", key: "y" }, { cert: "-----BEGIN CERTIFICATE-----" }, null]) {
    await assert.rejects(startServer({ port: 0, tls: tls as never }), TypeError);
  }
});

/** A `connect` like `cloudflare:sockets`' that records its calls and fails each. */
function recordingConnect() {
  const calls: Array<{ address: { hostname: string; port: number }; options: unknown }> = [];
  const connect = (
    address: { hostname: string; port: number },
    options: SocketConnectOptions,
  ): SocketLike => {
    calls.push({ address, options });
    const opened = Promise.reject(new Error("recorded only"));
    opened.catch(() => {});
    return {
      readable: new ReadableStream(),
      writable: new WritableStream(),
      opened,
      close: () => Promise.resolve(),
    };
  };
  return { calls, connect };
}

test("socketTransport passes secureTransport 'on' with tls and 'off' without", async () => {
  const { calls, connect } = recordingConnect();
  const transport = socketTransport(connect);
  for (const tls of [undefined, false, true, {}]) {
    await assert.rejects(
      ELockClient.connect({
        host: "elock.example",
        port: 11400,
        transport,
        ...(tls === undefined ? {} : { tls }),
      }),
      ConnectionClosedError,
    );
  }
  assert.deepEqual(calls, [
    { address: { hostname: "elock.example", port: 11400 }, options: { secureTransport: "off" } },
    { address: { hostname: "elock.example", port: 11400 }, options: { secureTransport: "off" } },
    { address: { hostname: "elock.example", port: 11400 }, options: { secureTransport: "on" } },
    { address: { hostname: "elock.example", port: 11400 }, options: { secureTransport: "on" } },
  ]);
});

test("socketTransport refuses caCerts and serverName, which Workers cannot honour", async () => {
  const { calls, connect } = recordingConnect();
  const transport = socketTransport(connect);
  const ca = (await loopbackCertificates()).caCert;
  for (const tls of [{ caCerts: [ca] }, { serverName: "elock.test" }]) {
    await assert.rejects(
      ELockClient.connect({ port: 11400, transport, tls }),
      (error: unknown) => {
        assert.ok(error instanceof ConnectionClosedError, String(error));
        assert.ok(error.cause instanceof TypeError, String(error.cause));
        assert.match(error.message, /socketTransport\(\) cannot/);
        return true;
      },
    );
  }
  assert.equal(calls.length, 0, "nothing was opened");
});
