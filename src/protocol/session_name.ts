/**
 * The public name of a session: what this project's server prints where the
 * extended protocol writes `#ID` (`409 Already locked by #ID`, `403 Locked by
 * #ID`, deadlock paths, `debug`). The session id that `conn_id` answers is a
 * secret (it resumes the session); the public name is derived from it by a
 * one-way hash, so a client can recognise itself in a reply but nobody can
 * resume a session from what the server prints.
 *
 * Synchronous and dependency-free (a small SHA-1), so that it runs the same on
 * Node, Deno, Bun and Cloudflare Workers.
 *
 * @module
 */

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/** Bytes of the digest a public name keeps: 9 bytes = 12 base64url characters (72 bits). */
const NAME_BYTES = 9;
const encoder = new TextEncoder();
const words = new Int32Array(80);

/**
 * The public name of the session whose secret id is `id`: the first 72 bits
 * of the SHA-1 of its UTF-8 bytes, as 12 base64url characters. A random id
 * (16 characters) never equals a public name (12 characters).
 *
 * @param id the session id, as `conn_id` answered it
 * @returns the name the server prints for that session
 *
 * @example Recognise yourself in a deadlock path
 * ```ts
 * import { sessionName } from "@x/elock";
 *
 * const me = sessionName("s3cr3t-s3ss10n-1d"); // e.g. from `await client.sessionId()`
 * const path = `#${me} => k1 = #Xy3_aB9cD0eF => k2 = #${me}`;
 * console.log(path.includes(`#${me} =>`)); // true
 * ```
 */
export function sessionName(id: string): string {
  const digest = sha1(encoder.encode(id));
  let name = "";
  for (let i = 0; i < NAME_BYTES; i += 3) {
    const n = (digest[i]! << 16) | (digest[i + 1]! << 8) | digest[i + 2]!;
    name += BASE64URL[n >>> 18]! + BASE64URL[(n >>> 12) & 63]! + BASE64URL[(n >>> 6) & 63]! +
      BASE64URL[n & 63]!;
  }
  return name;
}

/**
 * Whether `printed` (an id after `#` in a reply) names the session whose id
 * is `id`: on this project's server it is its public name, on the reference
 * servers (and with sequential ids) the id itself.
 *
 * @param printed the id as a reply prints it, without `#`
 * @param id the session id, as `conn_id` answered it
 * @returns true when `printed` stands for that session
 *
 * @example
 * ```ts
 * import { isSessionName, sessionName } from "@x/elock";
 *
 * isSessionName(sessionName("abc"), "abc"); // true
 * isSessionName("abc", "abc"); // true (a reference server prints the id itself)
 * ```
 */
export function isSessionName(printed: string, id: string): boolean {
  return printed === id || printed === sessionName(id);
}

/** SHA-1 of `bytes` (FIPS 180-4), 20 bytes. */
function sha1(bytes: Uint8Array): Uint8Array {
  const length = bytes.length;
  const blocks = ((length + 8) >>> 6) + 1;
  const padded = new Uint8Array(blocks * 64);
  padded.set(bytes);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  view.setUint32(padded.length - 4, (length << 3) >>> 0);
  let h0 = 0x67452301, h1 = 0xefcdab89, h2 = 0x98badcfe, h3 = 0x10325476, h4 = 0xc3d2e1f0;
  const w = words;
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getInt32(block + i * 4);
    for (let i = 16; i < 80; i++) {
      const x = w[i - 3]! ^ w[i - 8]! ^ w[i - 14]! ^ w[i - 16]!;
      w[i] = (x << 1) | (x >>> 31);
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4;
    for (let i = 0; i < 80; i++) {
      const f = i < 20
        ? ((b & c) | (~b & d)) + 0x5a827999
        : i < 40
        ? (b ^ c ^ d) + 0x6ed9eba1
        : i < 60
        ? ((b & c) | (b & d) | (c & d)) + 0x8f1bbcdc
        : (b ^ c ^ d) + 0xca62c1d6;
      const t = (((a << 5) | (a >>> 27)) + f + e + w[i]!) | 0;
      e = d;
      d = c;
      c = (b << 30) | (b >>> 2);
      b = a;
      a = t;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
  }
  const out = new Uint8Array(20);
  const outView = new DataView(out.buffer);
  outView.setInt32(0, h0);
  outView.setInt32(4, h1);
  outView.setInt32(8, h2);
  outView.setInt32(12, h3);
  outView.setInt32(16, h4);
  return out;
}

/**
 * Lower-case hex SHA-1 of `text` (UTF-8), computed synchronously.
 *
 * @param text any string
 * @returns 40 hex digits
 *
 * @example
 * ```ts
 * sha1HexSync("abc"); // "a9993e364706816aba3e25717850c26c9cd0d89d"
 * ```
 */
export function sha1HexSync(text: string): string {
  let hex = "";
  for (const byte of sha1(encoder.encode(text))) hex += byte.toString(16).padStart(2, "0");
  return hex;
}
