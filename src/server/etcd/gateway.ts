/**
 * A small client of etcd's v3 JSON gateway (`POST /v3/...`), with no
 * dependency: `fetch` on Deno and Bun, `node:http` with a keep-alive agent on
 * Node (Node 20's `fetch` adds about 1.5 ms a request and ends an idle
 * streamed body after 300 s).
 *
 * Every call has its own timeout. A transport error, a timeout or an etcd
 * "unavailable" answer moves the client to the next endpoint and rejects
 * with {@linkcode StoreUnavailableError}; a call is never retried here (a
 * timed-out transaction may have been applied: the caller decides).
 *
 * int64 fields (revisions, lease ids, TTLs) are JSON strings: lease ids go
 * beyond 2^53 and stay strings; revisions are read with `Number()` (they stay
 * far below 2^53). Keys and values are base64 of their bytes.
 *
 * @module
 */

import { StoreUnavailableError } from "../store.ts";

/** A response body as the gateway sends it. */
export type Json = Record<string, unknown>;

/** A request etcd refused (HTTP 4xx other than "unavailable"): a bug, or a lease that is gone. */
export class EtcdRequestError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** gRPC code etcd gave (5 = not found, 3 = invalid argument...). */
  readonly code: number;
  constructor(message: string, status: number, code: number) {
    super(message);
    this.name = "EtcdRequestError";
    this.status = status;
    this.code = code;
  }
}

interface Transport {
  /** Lets go of pooled connections. */
  close(): void;
  post(url: string, body: string, timeoutMs: number): Promise<{ status: number; text: string }>;
  /** Streams the response body's chunks to `onText` until it ends (resolves) or fails/aborts (rejects). */
  stream(
    url: string,
    body: string,
    signal: AbortSignal,
    onText: (text: string) => void,
  ): Promise<void>;
}

class TimeoutError extends Error {}

function fetchTransport(): Transport {
  return {
    close() {},
    async post(url, body, timeoutMs) {
      const ctl = new AbortController();
      const timer = setTimeout(
        () => ctl.abort(new TimeoutError(`timeout after ${timeoutMs} ms`)),
        timeoutMs,
      );
      try {
        const r = await fetch(url, {
          method: "POST",
          body,
          headers: { "content-type": "application/json" },
          signal: ctl.signal,
        });
        return { status: r.status, text: await r.text() };
      } finally {
        clearTimeout(timer);
      }
    },
    async stream(url, body, signal, onText) {
      const r = await fetch(url, { method: "POST", body, signal });
      if (r.status !== 200 || r.body === null) {
        await r.body?.cancel();
        throw new Error(`watch: HTTP ${r.status}`);
      }
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      // Some runtimes do not end a pending read when the fetch is aborted: cancel it.
      const cancel = () => reader.cancel().catch(() => {});
      signal.addEventListener("abort", cancel, { once: true });
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done || signal.aborted) return;
          onText(decoder.decode(value, { stream: true }));
        }
      } finally {
        signal.removeEventListener("abort", cancel);
        reader.releaseLock();
      }
    },
  };
}

async function nodeTransport(): Promise<Transport> {
  const http = await import("node:http");
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const request = (
    url: string,
    body: string,
    onResponse: (res: import("node:http").IncomingMessage) => void,
    onError: (e: unknown) => void,
    useAgent: boolean,
  ) => {
    const req = http.request(url, {
      method: "POST",
      ...(useAgent ? { agent } : {}),
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    }, onResponse);
    req.on("error", onError);
    req.end(body);
    return req;
  };
  return {
    close: () => agent.destroy(),
    post(url, body, timeoutMs) {
      return new Promise((resolve, reject) => {
        const req = request(url, body, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") });
          });
          res.on("error", (e) => {
            clearTimeout(timer);
            reject(e);
          });
        }, (e) => {
          clearTimeout(timer);
          reject(e);
        }, true);
        const timer = setTimeout(() => {
          req.destroy(new TimeoutError(`timeout after ${timeoutMs} ms`));
        }, timeoutMs);
      });
    },
    stream(url, body, signal, onText) {
      return new Promise((resolve, reject) => {
        const req = request(
          url,
          body,
          (res) => {
            if (res.statusCode !== 200) {
              res.resume();
              reject(new Error(`watch: HTTP ${res.statusCode}`));
              return;
            }
            res.setEncoding("utf8");
            res.on("data", (t: string) => onText(t));
            res.on("end", () => resolve());
            res.on("error", reject);
            res.on("close", () => resolve());
          },
          reject,
          false,
        );
        const abort = () => req.destroy(new Error("aborted"));
        if (signal.aborted) abort();
        signal.addEventListener("abort", abort, { once: true });
      });
    },
  };
}

function isNode(): boolean {
  const g = globalThis as Record<string, unknown>;
  const proc = g.process as { versions?: { node?: string } } | undefined;
  return g.Deno === undefined && g.Bun === undefined && typeof proc?.versions?.node === "string";
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Base64 of the bytes of `text`: each character is one byte (as the server
 * reads command lines), unless `utf8` is asked for.
 *
 * @example
 * ```ts
 * console.log(b64("elock/")); // "ZWxvY2sv"
 * ```
 */
export function b64(text: string, utf8 = false): string {
  if (utf8) {
    let bin = "";
    for (const byte of encoder.encode(text)) bin += String.fromCharCode(byte);
    return btoa(bin);
  }
  return btoa(text);
}

/**
 * The text of base64 `data`, one character per byte (or UTF-8 with `utf8`).
 *
 * @example
 * ```ts
 * console.log(unb64("ZWxvY2sv")); // "elock/"
 * ```
 */
export function unb64(data: unknown, utf8 = false): string {
  const bin = atob(typeof data === "string" ? data : "");
  if (!utf8) return bin;
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return decoder.decode(bytes);
}

/**
 * The end of the range of keys that start with `prefix` (its last byte + 1).
 *
 * @example
 * ```ts
 * console.log(prefixEnd("a/")); // "a0"
 * ```
 */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/**
 * Options of {@linkcode EtcdGateway}.
 *
 * @example
 * ```ts
 * const options: EtcdGatewayOptions = { endpoints: ["http://127.0.0.1:2379"], timeoutMs: 2000 };
 * ```
 */
export interface EtcdGatewayOptions {
  /** `http://host:port` of each member's client URL. */
  endpoints: readonly string[];
  /** Timeout of one call, in ms (default 2000). */
  timeoutMs?: number;
}

/**
 * A connection to an etcd cluster through its JSON gateway.
 *
 * @example
 * ```ts ignore
 * const gw = new EtcdGateway({ endpoints: ["http://127.0.0.1:2379"] });
 * const r = await gw.call("/kv/range", { key: b64("elock/") });
 * ```
 */
export class EtcdGateway {
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
  #current = 0;
  #transport: Promise<Transport>;

  constructor(options: EtcdGatewayOptions) {
    if (options.endpoints.length === 0) throw new TypeError("etcd: no endpoints");
    for (const e of options.endpoints) {
      if (!/^https?:\/\/[^/]+$/.test(e)) {
        throw new TypeError(`etcd: bad endpoint "${e}" (expected http://host:port)`);
      }
    }
    this.endpoints = [...options.endpoints];
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.#transport = isNode() ? nodeTransport() : Promise.resolve(fetchTransport());
  }

  /** Closes pooled connections (Node's keep-alive agent). */
  async close(): Promise<void> {
    (await this.#transport).close();
  }

  /** The endpoint calls go to now. */
  get endpoint(): string {
    return this.endpoints[this.#current]!;
  }

  #rotate(from: number): void {
    // Only the first failure on an endpoint moves on (concurrent calls fail together).
    if (this.#current === from) this.#current = (from + 1) % this.endpoints.length;
  }

  /**
   * POSTs `body` to `/v3${path}`; the parsed answer.
   *
   * @throws {StoreUnavailableError} on a transport error, a timeout or an unavailable cluster
   * @throws {EtcdRequestError} when etcd refuses the request
   */
  async call(path: string, body: Json, timeoutMs: number = this.timeoutMs): Promise<Json> {
    const transport = await this.#transport;
    let at = this.#current;
    let status: number;
    let text: string;
    for (let tries = 1;; tries++) {
      try {
        ({ status, text } = await transport.post(
          this.endpoints[at] + "/v3" + path,
          JSON.stringify(body),
          timeoutMs,
        ));
        break;
      } catch (e) {
        this.#rotate(at);
        // A refused connection sent nothing: the next member may take the
        // same request. Anything else (a timeout) may have been applied.
        if (refused(e) && tries < this.endpoints.length) {
          at = this.#current;
          continue;
        }
        throw new StoreUnavailableError(`etcd ${this.endpoints[at]}: ${errorText(e)}`, {
          cause: e,
        });
      }
    }
    let json: Json;
    try {
      json = text === "" ? {} : JSON.parse(text) as Json;
    } catch (e) {
      this.#rotate(at);
      throw new StoreUnavailableError(`etcd ${this.endpoints[at]}: bad answer (HTTP ${status})`, {
        cause: e,
      });
    }
    if (status === 200 && json.error === undefined) return json;
    const code = typeof json.code === "number" ? json.code : 0;
    const message = String(json.error ?? json.message ?? `HTTP ${status}`);
    // 14 unavailable, 4 deadline exceeded, 1 canceled, 8 resource exhausted (too many requests).
    if (status >= 500 || code === 14 || code === 4 || code === 1 || code === 8) {
      this.#rotate(at);
      throw new StoreUnavailableError(`etcd ${this.endpoints[at]}: ${message}`);
    }
    throw new EtcdRequestError(`etcd ${path}: ${message}`, status, code);
  }

  /**
   * Runs one watch stream (`POST /v3/watch` with `create_request`), handing
   * each `result` frame to `onFrame`, until it ends (resolves), fails
   * (rejects, after moving to the next endpoint) or `signal` aborts.
   */
  async watch(create: Json, signal: AbortSignal, onFrame: (result: Json) => void): Promise<void> {
    const transport = await this.#transport;
    const at = this.#current;
    let buffer = "";
    const inner = new AbortController();
    const stop = () => inner.abort();
    if (signal.aborted) stop();
    signal.addEventListener("abort", stop, { once: true });
    try {
      await transport.stream(
        this.endpoints[at] + "/v3/watch",
        JSON.stringify({ create_request: create }),
        inner.signal,
        (text) => {
          buffer += text;
          let i: number;
          while ((i = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, i).trim();
            buffer = buffer.slice(i + 1);
            if (line === "") continue;
            const frame = JSON.parse(line) as Json;
            if (frame.error !== undefined) throw new Error(String(JSON.stringify(frame.error)));
            if (frame.result !== undefined) onFrame(frame.result as Json);
            // etcd cancels a watch (a start below the compaction point) and keeps the stream
            // open: end it, so that the caller starts again where it now can.
            if ((frame.result as Json | undefined)?.canceled === true) inner.abort();
          }
        },
      );
    } catch (e) {
      if (!inner.signal.aborted) this.#rotate(at);
      if (signal.aborted || !inner.signal.aborted) throw e;
      // Canceled by etcd: ends like a stream that ended.
    } finally {
      signal.removeEventListener("abort", stop);
    }
  }
}

/** Whether `e` is a connection refused (nothing was sent). */
function refused(e: unknown): boolean {
  for (let x: unknown = e, depth = 0; x instanceof Error && depth < 4; depth++) {
    const code = (x as Error & { code?: unknown }).code;
    if (code === "ECONNREFUSED" || /ECONNREFUSED|Connection refused/i.test(x.message)) return true;
    x = (x as Error & { cause?: unknown }).cause;
  }
  return false;
}

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}
