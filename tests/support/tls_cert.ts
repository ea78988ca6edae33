/**
 * Certificates made at run time for the TLS tests: a throwaway CA, and a
 * server certificate it signed for the loopback names. Made with the
 * `selfsigned` package (WebCrypto), so the same code runs on Node, Deno and
 * Bun and nothing is kept on disk.
 *
 * @module
 */

import { generate } from "selfsigned";

/** A CA and a server certificate signed by it, all PEM. */
export interface TestCertificates {
  /** The CA's certificate: what a client must trust. */
  readonly caCert: string;
  /** The server's certificate (signed by the CA). */
  readonly cert: string;
  /** The server's private key. */
  readonly key: string;
}

/** Subject alternative names of a server certificate. */
export interface ServerNames {
  /** DNS names, e.g. `localhost`. */
  readonly dns?: readonly string[];
  /** IP addresses, e.g. `127.0.0.1`. */
  readonly ips?: readonly string[];
}

/**
 * Makes a fresh CA and a server certificate for `names` (default: DNS
 * `localhost`, IPs `127.0.0.1` and `::1`), valid from a day ago for a week.
 */
export async function makeCertificates(
  names: ServerNames = { dns: ["localhost"], ips: ["127.0.0.1", "::1"] },
): Promise<TestCertificates> {
  const notBeforeDate = new Date(Date.now() - 24 * 3600_000);
  const notAfterDate = new Date(Date.now() + 7 * 24 * 3600_000);
  const common = {
    keyType: "ec",
    curve: "P-256",
    algorithm: "sha256",
    notBeforeDate,
    notAfterDate,
  } as const;
  const ca = await generate([{ name: "commonName", value: "elock test CA" }], {
    ...common,
    extensions: [
      { name: "basicConstraints", cA: true, critical: true },
      {
        name: "keyUsage",
        keyCertSign: true,
        cRLSign: true,
        digitalSignature: true,
        critical: true,
      },
    ],
  });
  const server = await generate([{ name: "commonName", value: "elock test server" }], {
    ...common,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          ...(names.dns ?? []).map((value) => ({ type: 2 as const, value })),
          ...(names.ips ?? []).map((ip) => ({ type: 7 as const, ip })),
        ],
      },
    ],
  });
  return { caCert: ca.cert, cert: server.cert, key: server.private };
}
