/**
 * A Cloudflare Worker: a Worker has no default transport, so the client
 * opens its connection with `connect` from `cloudflare:sockets`. Each
 * request takes the lock `report` for the length of its work; `await using`
 * releases it and closes the connection when `fetch` returns.
 *
 * Deploy with wrangler (`main = "cloudflare_worker.ts"`), with the server's
 * address in the `ELOCK_HOST` and `ELOCK_PORT` variables.
 *
 * @module
 */

// @ts-ignore: cloudflare:sockets exists only inside workerd.
import { connect } from "cloudflare:sockets";
import { ELockClient, type SocketConnect, socketTransport } from "@x/elock";

/** The Worker's variables. */
export interface Env {
  ELOCK_HOST?: string;
  ELOCK_PORT?: string;
}

export default {
  async fetch(_request: Request, env: Env): Promise<Response> {
    await using client = await ELockClient.connect({
      host: env.ELOCK_HOST ?? "127.0.0.1",
      port: Number(env.ELOCK_PORT ?? 11400),
      transport: socketTransport(connect as SocketConnect),
    });
    if (!await client.lock("report", { timeout: 2000 })) {
      return new Response("busy: another request holds the report lock", { status: 503 });
    }
    const session = await client.sessionId();
    return new Response(`report built under the lock, session ${session}`);
  },
};
