/**
 * The lock table on etcd: any number of bundled servers on one etcd cluster
 * behave as one eLock server.
 *
 * Keys (under `prefix`, default `elock/`):
 * - `s/SECRET`: a session, `{"n":NAME,"rt":MS,"l":LEASE,"c":SERVER|null,"d":MS,"p":PEER,"m":CLIENT}`
 *   (`p`, the `host:port` of its connection, and `m`, the name its client gave, when known), on the
 *   session's lease. The lease's TTL is 1.5 × the release timeout (at least
 *   etcd's minimum, 2 s), kept alive every TTL/3 by the server that holds the
 *   session's connection: when that server dies, the session's keys go between
 *   one and 1.5 release timeouts later (at least 2 s: the floor of
 *   `set_timeout 0` when the server itself dies). While the server lives, a
 *   disconnected session goes after exactly its release timeout (it revokes
 *   the lease), at once with a release timeout of 0.
 * - `srv/SERVER`: a live server, on a 3 s lease of its own (for `conn_id`: a
 *   session attached to a live server is "active").
 * - `h/KEY`: the holder of KEY, `{"n":NAME,"s":SECRET}`, on the holder's lease.
 * - `o/SECRET/KEY`: the keys a session holds (for a resume on another server),
 *   written and deleted in the same transactions as the hold itself. Its
 *   create revision (that of the grant's transaction) is the hold's fencing
 *   token, and every "is it still mine" compare is on it.
 * - `w/LEN:KEY/SECRET`: a waiter; waiters are served in the order of their
 *   create revision.
 * - `w/!/SECRET`: `{"k":KEY}`, written by the hand-off of KEY to SECRET (on its
 *   lease): tells the waiter's server.
 * - `v/LEN:KEY/SECRET`: a value holder of KEY (value lock); its value is the lock's value.
 *   A value lock is granted by a read, then a transaction conditioned on no
 *   holder and nothing created among the key's holders and waiters since.
 *
 * Every grant is one transaction conditioned on what it read: the key has no
 * holder, and (fresh lock) nobody waits, or (waiter) no waiter is older. An
 * exclusive unlock whose oldest waiter waits for the key exclusively hands the
 * key over in the unlock's own transaction, conditioned on still holding it
 * and on that waiter being there and the oldest (a hand-off is then one etcd
 * round trip, not two); the waiter's server learns it from its watch. Which
 * waiter to try comes from the watch (a hint: a stale one makes the compare
 * fail and the unlock retries with what etcd answered). Two watches per
 * server: deletes on the whole prefix wake the local waiters of a freed key;
 * puts under `w/` show new waiters (the hints) and hand-off notices. Local
 * waiters also retry once a second, so a lost event delays, never blocks.
 * A call etcd does not answer (no quorum, timeout) rejects with
 * {@linkcode StoreUnavailableError}.
 *
 * Not on this store yet: deadlock detection, sequential ids, the grace period.
 *
 * @module
 */

import { sessionName } from "../../protocol/session_name.ts";
import { MAX_WAIT_MS, type ResumeResult, type UnlockResult } from "../lock_table.ts";
import type { LockResult } from "../lock_table.ts";
import {
  type ForceUnlockResult,
  type LockStore,
  type StoreDebug,
  type StoreSession,
  type StoreStats,
  StoreUnavailableError,
} from "../store.ts";
import { b64, EtcdGateway, EtcdRequestError, type Json, prefixEnd, unb64 } from "./gateway.ts";

/**
 * Options of {@linkcode EtcdStore.connect}.
 *
 * @example
 * ```ts
 * const options: EtcdStoreOptions = { endpoints: ["http://127.0.0.1:2379"] };
 * ```
 */
export interface EtcdStoreOptions {
  /** Client URLs of the etcd members (`http://host:port`). */
  endpoints: readonly string[];
  /** Key prefix of the table (default `elock/`). Servers that share a prefix share a table. */
  prefix?: string;
  /** Release timeout of a new session, in ms (default 30000). */
  defaultReleaseTimeout?: number;
  /** Timeout of one etcd call, in ms (default 2000). */
  timeoutMs?: number;
  /** Keys one session may hold at once (default 100,000). */
  maxHeldKeys?: number;
  /** Requests that may wait for one key at once (default 100,000). */
  maxWaitersPerKey?: number;
  /** Answer a wait that would close a cycle of waiters with a deadlock (default true). */
  detectDeadlocks?: boolean;
  /** Called when a connected session's lease was found gone in etcd (its locks are lost). */
  onSessionLost?: (session: StoreSession) => void;
}

/** A session of the etcd store, as this server knows it. */
export interface EtcdSession extends StoreSession {
  readonly held: Map<string, number>;
  /** The value of each key of `held` held as a value lock. */
  readonly values: Map<string, string>;
  /** Lease id (a decimal string: ids go beyond 2^53). */
  lease: string;
  /**
   * A second lease kept alive with `lease` after a lease change failed half-way
   * (some of the session's keys may still be on it, or its record); revoked
   * with the session.
   */
  extraLease?: string | undefined;
  /** TTL of the lease, in s. */
  ttl: number;
  /** Mod revision of the session key as this server last wrote it. */
  rev: number;
  connected: boolean;
  /** Its lease was found gone: its locks are lost. */
  lost: boolean;
  /** A grant's answer was lost: etcd may hold keys for it that `held` does not list. */
  uncertain: boolean;
  waiting: Wait | null;
  /** `cancelWait` came while a lock was on its way to etcd: that lock must not wait. */
  cancelled: boolean;
  /** A withdrawal still to be done once etcd answers (`#withdrawLater`): commands wait for it. */
  settling?: Promise<void> | undefined;
  /** The last hand-off notice that found no wait of this session (see `#handedOver`). */
  handed?: { key: string; rev: number } | undefined;
  keepalive: ReturnType<typeof setTimeout> | undefined;
  expiry: ReturnType<typeof setTimeout> | undefined;
  disconnectedAt: number;
}

interface Wait {
  readonly session: EtcdSession;
  readonly key: string;
  /** null for an exclusive lock. */
  readonly value: string | null;
  /** Create revision of the waiter key. */
  readonly rev: number;
  readonly done: Promise<LockResult>;
  resolve: (r: LockResult) => void;
  finished: boolean;
  busy: boolean;
  again: boolean;
  /** Withdraw (timeout or cancel) asked. */
  leaving: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
  poll: ReturnType<typeof setInterval> | undefined;
}

/** A waiter as the watch or a read showed it: what a hand-off to it needs. */
interface WaiterHint {
  readonly secret: string;
  /** Its session's public name. */
  readonly n: string;
  /** null: exclusive. */
  readonly value: string | null;
  readonly create: number;
  readonly mod: number;
  readonly lease: string;
}

/** What a read of one key found. */
interface KeyView {
  readonly rev: number;
  readonly holder: { n: string; s: string } | null;
  /** Value holders, oldest first. */
  readonly values: readonly { secret: string; name: string; value: string; create: number }[];
  /** Waiters, oldest first. */
  readonly waiters: readonly { secret: string; value: string | null; create: number }[];
}

const ACQUIRED: LockResult = Object.freeze({ kind: "acquired" });
const CONFLICT: LockResult = Object.freeze({ kind: "conflict" });
/** etcd's smallest lease TTL with the default election timeout, in s. */
export const ETCD_MIN_TTL_SECONDS = 2;
const SERVER_TTL_SECONDS = 3;
const POLL_MS = 1000;
/** Operations per transaction we stay under (etcd's default `--max-txn-ops` is 128). */
const TXN_OPS = 100;

/** The lease TTL (s) for a release timeout (ms): 1.5 × it, at least etcd's minimum. */
export function leaseTtl(releaseTimeout: number): number {
  return Math.max(ETCD_MIN_TTL_SECONDS, Math.ceil(releaseTimeout * 1.5 / 1000));
}

type Op = Json;
const cmp = (key: string, target: string, result: string, field: string, v: string | number) => ({
  key: b64(key),
  target,
  result,
  [field]: String(v),
});
const cmpRange = (
  key: string,
  end: string,
  target: string,
  result: string,
  field: string,
  v: number,
) => ({ key: b64(key), range_end: b64(end), target, result, [field]: String(v) });
const put = (key: string, value: string, lease?: string): Op => ({
  request_put: { key: b64(key), value: b64(value), ...(lease === undefined ? {} : { lease }) },
});
const del = (key: string, end?: string): Op => ({
  request_delete_range: { key: b64(key), ...(end === undefined ? {} : { range_end: b64(end) }) },
});
const range = (key: string, end?: string, countOnly = false): Op => ({
  request_range: {
    key: b64(key),
    ...(end === undefined ? {} : { range_end: b64(end) }),
    ...(countOnly ? { count_only: true } : {}),
  },
});

interface Kv {
  key: string;
  value: string;
  create: number;
  mod: number;
  lease: string;
}

function kvs(response: unknown): Kv[] {
  const r = (response as { response_range?: { kvs?: Json[] } }).response_range;
  return (r?.kvs ?? []).map((kv) => ({
    key: unb64(kv.key),
    value: unb64(kv.value),
    create: Number(kv.create_revision ?? 0),
    mod: Number(kv.mod_revision ?? 0),
    lease: String(kv.lease ?? "0"),
  }));
}

function count(response: unknown): number {
  const r = (response as { response_range?: { count?: string } }).response_range;
  return Number(r?.count ?? 0);
}

function revision(j: Json): number {
  return Number((j.header as { revision?: string } | undefined)?.revision ?? 0);
}

interface TxnAnswer {
  succeeded: boolean;
  revision: number;
  responses: unknown[];
}

function randomId(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return btoa(String.fromCharCode(...b)).replaceAll("+", "-").replaceAll("/", "_").replaceAll(
    "=",
    "",
  );
}

function holderOf(value: string): { n: string; s: string } | null {
  try {
    const v = JSON.parse(value) as { n?: unknown; s?: unknown };
    return typeof v.n === "string" && typeof v.s === "string" ? { n: v.n, s: v.s } : null;
  } catch {
    return null;
  }
}

/**
 * The lock table of one or more bundled servers, kept in etcd.
 *
 * @example
 * ```ts ignore
 * const store = await EtcdStore.connect({ endpoints: ["http://127.0.0.1:2379"] });
 * const s = await store.createSession();
 * console.log(await store.lock(s, "k", null, 0)); // { kind: "acquired" }
 * await store.close();
 * ```
 */
export class EtcdStore implements LockStore<EtcdSession> {
  readonly gateway: EtcdGateway;
  readonly prefix: string;
  /** This server's id in etcd (`srv/ID`). */
  readonly serverId: string = randomId(8);
  readonly #defaultReleaseTimeout: number;
  readonly #maxHeld: number;
  readonly #maxWaiters: number;
  readonly #detectDeadlocks: boolean;
  readonly #onSessionLost: ((session: StoreSession) => void) | undefined;
  /** Sessions this server knows, by secret. */
  readonly #sessions = new Map<string, EtcdSession>();
  /** Local waits by lock key. */
  readonly #waits = new Map<string, Set<Wait>>();
  /**
   * Every server's waiters by lock key, as the watch showed them: whom an
   * unlock tries to hand the key to. A hint only (every hand-off is
   * conditioned on the waiter being there and the oldest); emptied when the
   * watch restarts.
   */
  readonly #hints = new Map<string, Map<string, WaiterHint>>();
  /**
   * Waiter keys (`KEY\0SECRET`) whose deletion the watch of deletes showed
   * before the watch of puts showed their creation, with the revision of the
   * deletion: so that the late put does not become a hint.
   */
  readonly #gone = new Map<string, number>();
  #serverLease = "0";
  #serverKeepalive: ReturnType<typeof setTimeout> | undefined;
  #watchRev = 0;
  /** The revision the watch of puts under `w/` has seen. */
  #noticeRev = 0;
  readonly #watchAbort = new AbortController();
  #watchLoop: Promise<void> = Promise.resolve();
  #closed = false;
  #abandoned = false;
  /** Background clean-ups (waiter deletes, lease revokes) still running. */
  readonly #chores = new Set<Promise<unknown>>();

  private constructor(options: EtcdStoreOptions) {
    this.gateway = new EtcdGateway({
      endpoints: options.endpoints,
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    });
    this.prefix = options.prefix ?? "elock/";
    this.#defaultReleaseTimeout = options.defaultReleaseTimeout ?? 30_000;
    this.#maxHeld = options.maxHeldKeys ?? 100_000;
    this.#maxWaiters = options.maxWaitersPerKey ?? 100_000;
    this.#detectDeadlocks = options.detectDeadlocks ?? true;
    this.#onSessionLost = options.onSessionLost;
  }

  /**
   * Connects to etcd: registers this server (`srv/ID` on its own lease) and
   * starts the watch that wakes waiters.
   *
   * @throws {StoreUnavailableError} when etcd does not answer
   */
  static async connect(options: EtcdStoreOptions): Promise<EtcdStore> {
    const store = new EtcdStore(options);
    await store.#start();
    return store;
  }

  async #start(): Promise<void> {
    const grant = await this.gateway.call("/lease/grant", { TTL: String(SERVER_TTL_SECONDS) });
    this.#serverLease = String(grant.ID);
    const r = await this.gateway.call("/kv/put", {
      key: b64(this.prefix + "srv/" + this.serverId),
      value: b64(String(Date.now())),
      lease: this.#serverLease,
    });
    this.#watchRev = revision(r);
    this.#noticeRev = this.#watchRev;
    this.#keepServer();
    const p = this.prefix;
    this.#watchLoop = Promise.all([
      this.#watch(p, "NOPUT", () => this.#watchRev, (result) => this.#onDeletes(result)),
      this.#watch(p + "w/", "NODELETE", () => this.#noticeRev, (res) => this.#onWaiterPuts(res)),
    ]).then(() => {});
  }

  #keepServer(): void {
    this.#serverKeepalive = setTimeout(async () => {
      if (this.#closed) return;
      try {
        const r = await this.gateway.call("/lease/keepalive", { ID: this.#serverLease }, 1000);
        const ttl = Number((r.result as Json | undefined)?.TTL ?? 0);
        if (ttl <= 0 && !this.#closed) {
          // Our server lease expired (we were cut off): register again.
          const grant = await this.gateway.call("/lease/grant", {
            TTL: String(SERVER_TTL_SECONDS),
          });
          this.#serverLease = String(grant.ID);
          await this.gateway.call("/kv/put", {
            key: b64(this.prefix + "srv/" + this.serverId),
            value: b64(String(Date.now())),
            lease: this.#serverLease,
          });
        }
      } catch {
        // Try again at the next tick.
      }
      if (!this.#closed) this.#keepServer();
    }, SERVER_TTL_SECONDS * 1000 / 3);
  }

  /**
   * Keeps one watch going from the revision after `from()`: `filter` "NOPUT"
   * (deletes, on the whole prefix: what frees keys) or "NODELETE" (puts under
   * `w/`: new waiters, for the hints, and hand-off notices). After a break it
   * restarts where it was, and every local waiter looks again.
   */
  async #watch(
    key: string,
    filter: "NOPUT" | "NODELETE",
    from: () => number,
    onResult: (result: Json) => void,
  ): Promise<void> {
    const signal = this.#watchAbort.signal;
    while (!this.#closed) {
      try {
        await this.gateway.watch(
          {
            key: b64(key),
            range_end: b64(prefixEnd(key)),
            start_revision: String(from() + 1),
            filters: [filter],
            progress_notify: true,
          },
          signal,
          onResult,
        );
      } catch {
        // Restart below, from the last revision seen, on the next endpoint.
      }
      if (this.#closed) return;
      // What the watch showed of other servers' waiters may be out of date now.
      this.#hints.clear();
      this.#gone.clear();
      await new Promise((r) => setTimeout(r, 100));
      // Whatever was missed: every local waiter looks again.
      for (const set of this.#waits.values()) for (const w of set) this.#tryGrant(w);
    }
  }

  /** Deletes: a key freed (holder, value holder or waiter gone) wakes its oldest local waiters. */
  #onDeletes(result: Json): void {
    const compacted = Number(result.compact_revision ?? 0);
    if (compacted > 0) {
      this.#watchRev = Math.max(this.#watchRev, compacted - 1);
      for (const set of this.#waits.values()) for (const w of set) this.#tryGrant(w);
      return;
    }
    const events = (result.events ?? []) as Json[];
    const h = this.prefix + "h/";
    const o = this.prefix + "o/";
    const w = this.prefix + "w/";
    const v = this.prefix + "v/";
    /** By lock key, the revisions of this batch that freed something, and those that deleted a holder. */
    const changed = new Map<string, Set<number>>();
    const freed = new Map<string, Set<number>>();
    const handed = new Map<string, Set<number>>();
    const note = (map: Map<string, Set<number>>, key: string, rev: number) => {
      let set = map.get(key);
      if (set === undefined) map.set(key, set = new Set());
      set.add(rev);
    };
    for (const event of events) {
      const kv = event.kv as Json | undefined;
      const key = unb64(kv?.key);
      const mod = Number(kv?.mod_revision ?? 0);
      this.#watchRev = Math.max(this.#watchRev, mod);
      if (key.startsWith(h)) {
        const lockKey = key.slice(h.length);
        note(changed, lockKey, mod);
        note(freed, lockKey, mod);
      } else if (key.startsWith(o)) {
        // An owner index deleted without its h/KEY (an exclusive hold's unlock deletes both): a
        // hand-off, the key stays held. (A value hold's o/ goes with its v/ key: freed below.)
        const rest = key.slice(o.length);
        const lockKey = rest.slice(rest.indexOf("/") + 1);
        note(handed, lockKey, mod);
      } else if (key.startsWith(w) || key.startsWith(v)) {
        const rest = key.slice(w.length);
        if (rest.startsWith("!")) continue; // a hand-off notice
        const lockKey = parseLenKey(rest);
        if (key.startsWith(v)) note(freed, lockKey, mod);
        else {
          const secret = rest.slice(rest.indexOf(":") + 1 + lockKey.length + 1);
          const hints = this.#hints.get(lockKey);
          const hint = hints?.get(secret);
          if (hint !== undefined && hint.create < mod) hints!.delete(secret);
          else if (hint === undefined && this.#noticeRev < mod) {
            // Its put is still to come on the other watch: it must not become a hint then.
            this.#gone.set(lockKey + "\0" + secret, mod);
          }
          if (hints?.size === 0) this.#hints.delete(lockKey);
        }
        note(changed, lockKey, mod);
      }
    }
    for (const [lockKey, revs] of changed) {
      // A waiter key deleted by a hand-off frees nothing: the key stays held.
      const gone = freed.get(lockKey);
      const kept = handed.get(lockKey);
      if ([...revs].every((r) => kept?.has(r) === true && gone?.has(r) !== true)) continue;
      this.#wake(lockKey);
    }
    this.#watchRev = Math.max(this.#watchRev, revision(result));
  }

  /** Puts under `w/`: a new waiter (a hint for unlocks), or a hand-off notice for a local wait. */
  #onWaiterPuts(result: Json): void {
    if (Number(result.compact_revision ?? 0) > 0) {
      this.#noticeRev = Math.max(this.#noticeRev, Number(result.compact_revision) - 1);
      this.#hints.clear();
      this.#gone.clear();
      return;
    }
    const w = this.prefix + "w/";
    for (const event of (result.events ?? []) as Json[]) {
      const kv = event.kv as Json | undefined;
      const key = unb64(kv?.key);
      const mod = Number(kv?.mod_revision ?? 0);
      this.#noticeRev = Math.max(this.#noticeRev, mod);
      if (!key.startsWith(w)) continue;
      const rest = key.slice(w.length);
      if (rest.startsWith("!/")) {
        let lockKey: unknown;
        try {
          lockKey = (JSON.parse(unb64(kv?.value)) as { k?: unknown }).k;
        } catch {
          continue;
        }
        if (typeof lockKey === "string") this.#handedOver(lockKey, rest.slice(2), mod);
        continue;
      }
      const lockKey = parseLenKey(rest);
      const hint = this.#hintOf({
        key,
        value: unb64(kv?.value),
        create: Number(kv?.create_revision ?? 0),
        mod,
        lease: String(kv?.lease ?? "0"),
      }, lockKey);
      if (hint === null) continue;
      const gone = this.#gone.get(lockKey + "\0" + hint.secret);
      if (gone !== undefined && gone > hint.create) continue; // deleted already
      let hints = this.#hints.get(lockKey);
      if (hints === undefined) this.#hints.set(lockKey, hints = new Map());
      hints.set(hint.secret, hint);
    }
    this.#noticeRev = Math.max(this.#noticeRev, revision(result));
    // Deletions this watch has now passed: the puts they followed were seen above.
    for (const [k, mod] of this.#gone) if (mod <= this.#noticeRev) this.#gone.delete(k);
  }

  /**
   * Only the oldest waiter of the key, or the oldest of a value (joining its
   * group), can be granted (each grant is conditioned on that): waking the
   * others would cost etcd a transaction each, on every change.
   */
  #wake(lockKey: string): void {
    let oldest: Wait | null = null;
    const oldestOf = new Map<string, Wait>();
    for (const wait of this.#waits.get(lockKey) ?? []) {
      if (wait.finished || wait.leaving) continue;
      if (oldest === null || wait.rev < oldest.rev) oldest = wait;
      const same = wait.value === null ? undefined : oldestOf.get(wait.value);
      if (wait.value !== null && (same === undefined || wait.rev < same.rev)) {
        oldestOf.set(wait.value, wait);
      }
    }
    if (oldest !== null) this.#tryGrant(oldest);
    for (const wait of oldestOf.values()) if (wait !== oldest) this.#tryGrant(wait);
  }

  /**
   * A hand-off notice: `lockKey` was handed to session `secret` at revision
   * `rev`. A local exclusive wait of it queued before `rev` is the one the
   * hand-off consumed (a session has one waiter key per key at a time): it
   * is granted, with `rev` as its token. With no such wait yet (the wait is
   * being set up), the notice is kept for {@linkcode #wait}.
   */
  #handedOver(lockKey: string, secret: string, rev: number): void {
    const session = this.#sessions.get(secret);
    if (session === undefined || session.lost) return;
    for (const wait of this.#waits.get(lockKey) ?? []) {
      if (wait.session !== session || wait.value !== null || wait.finished) continue;
      if (wait.rev >= rev) return;
      session.held.set(lockKey, rev);
      this.#finish(wait, ACQUIRED);
      return;
    }
    session.handed = { key: lockKey, rev };
  }

  async #txn(compare: Json[], success: Op[], failure: Op[] = []): Promise<TxnAnswer> {
    this.#check();
    const j = await this.gateway.call("/kv/txn", { compare, success, failure });
    return {
      succeeded: j.succeeded === true,
      revision: revision(j),
      responses: (j.responses ?? []) as unknown[],
    };
  }

  #check(): void {
    if (this.#abandoned) throw new StoreUnavailableError("etcd store abandoned");
  }

  #sKey(secret: string): string {
    return this.prefix + "s/" + secret;
  }
  #hKey(key: string): string {
    return this.prefix + "h/" + key;
  }
  #oKey(secret: string, key: string): string {
    return this.prefix + "o/" + secret + "/" + key;
  }
  #qKey(secret: string): string {
    return this.prefix + "q/" + secret;
  }
  #vPrefix(key: string): string {
    return this.prefix + "v/" + key.length + ":" + key + "/";
  }
  #wPrefix(key: string): string {
    return this.prefix + "w/" + key.length + ":" + key + "/";
  }
  #sessionValue(s: EtcdSession): string {
    return JSON.stringify({
      n: s.id,
      rt: s.releaseTimeout,
      l: s.lease,
      c: s.connected ? this.serverId : null,
      d: s.connected ? 0 : s.disconnectedAt,
      p: s.peer,
      m: s.name,
    });
  }
  #holderValue(s: { id: string; secret: string }): string {
    return JSON.stringify({ n: s.id, s: s.secret });
  }
  /** Compares: `session` still holds `key` by the grant of fencing token `token`. */
  #mine(session: EtcdSession, key: string, token: number): Json {
    return cmp(this.#oKey(session.secret, key), "CREATE", "EQUAL", "create_revision", token);
  }
  /** The fencing token in a range response of `o/SECRET/KEY`, or null when it is gone. */
  #tokenIn(response: unknown): number | null {
    return kvs(response)[0]?.create ?? null;
  }
  /** The waiter a `w/LEN:KEY/SECRET` key-value stands for, or null when it is not one. */
  #hintOf(kv: Kv, key: string): WaiterHint | null {
    const wp = this.#wPrefix(key);
    if (!kv.key.startsWith(wp)) return null;
    try {
      const v = JSON.parse(kv.value) as { n?: unknown; v?: unknown };
      if (typeof v.n !== "string") return null;
      return {
        secret: kv.key.slice(wp.length),
        n: v.n,
        value: typeof v.v === "string" ? v.v : null,
        create: kv.create,
        mod: kv.mod,
        lease: kv.lease,
      };
    } catch {
      return null;
    }
  }
  /** The oldest waiter the watch has shown for `key`, if it waits exclusively (and is not `holder`). */
  #nextHint(key: string, holder: EtcdSession): WaiterHint | null {
    let oldest: WaiterHint | null = null;
    for (const h of this.#hints.get(key)?.values() ?? []) {
      if (oldest === null || h.create < oldest.create) oldest = h;
    }
    return oldest !== null && oldest.value === null && oldest.secret !== holder.secret
      ? oldest
      : null;
  }

  async createSession(peer?: string): Promise<EtcdSession> {
    if (this.#closed) throw new StoreUnavailableError("etcd store closed");
    const secret = randomId(12);
    const rt = this.#defaultReleaseTimeout;
    const ttl = leaseTtl(rt);
    const grant = await this.gateway.call("/lease/grant", { TTL: String(ttl) });
    const session: EtcdSession = {
      id: sessionName(secret),
      secret,
      releaseTimeout: rt,
      held: new Map(),
      values: new Map(),
      lease: String(grant.ID),
      ttl: Number(grant.TTL ?? ttl),
      rev: 0,
      connected: true,
      lost: false,
      uncertain: false,
      waiting: null,
      cancelled: false,
      keepalive: undefined,
      expiry: undefined,
      disconnectedAt: 0,
      peer,
      name: undefined,
    };
    try {
      const t = await this.#txn(
        [cmp(this.#sKey(secret), "CREATE", "EQUAL", "create_revision", 0)],
        [put(this.#sKey(secret), this.#sessionValue(session), session.lease)],
      );
      if (!t.succeeded) throw new StoreUnavailableError("session id collision");
      session.rev = t.revision;
    } catch (e) {
      this.#chore(this.#revoke(session.lease));
      throw e;
    }
    this.#sessions.set(secret, session);
    this.#keepAlive(session);
    return session;
  }

  #keepAlive(session: EtcdSession): void {
    clearTimeout(session.keepalive);
    session.keepalive = setTimeout(async () => {
      session.keepalive = undefined;
      if (this.#closed || !session.connected) return;
      try {
        await this.#refresh(session);
      } catch {
        // Next tick.
      }
      if (!this.#closed && session.connected && !session.lost) this.#keepAlive(session);
    }, session.ttl * 1000 / 3);
  }

  /** One keepalive of the session's lease; marks the session lost when the lease is gone. */
  async #refresh(session: EtcdSession): Promise<void> {
    this.#check();
    const r = await this.gateway.call("/lease/keepalive", { ID: session.lease });
    const ttl = Number((r.result as Json | undefined)?.TTL ?? 0);
    if (ttl <= 0) this.#lose(session);
    if (session.extraLease !== undefined) {
      await this.gateway.call("/lease/keepalive", { ID: session.extraLease }).catch(() => {});
    }
  }

  #lose(session: EtcdSession): void {
    if (session.lost) return;
    session.lost = true;
    session.held.clear();
    clearTimeout(session.keepalive);
    if (session.connected) {
      session.onLost?.();
      this.#onSessionLost?.(session);
    }
  }

  #live(session: EtcdSession): void {
    if (session.lost) throw new StoreUnavailableError("session expired in etcd");
    if (this.#closed) throw new StoreUnavailableError("etcd store closed");
  }

  /** Reads the whole state of `key`: its exclusive holder, value holders, waiters (oldest first). */
  async #state(key: string): Promise<KeyView> {
    const h = this.#hKey(key);
    const vp = this.#vPrefix(key);
    const wp = this.#wPrefix(key);
    const t = await this.#txn([], [range(h), range(vp, prefixEnd(vp)), range(wp, prefixEnd(wp))]);
    return this.#view(t.revision, t.responses[0], t.responses[1], t.responses[2], key);
  }

  #view(rev: number, h: unknown, v: unknown, w: unknown, key: string): KeyView {
    const vp = this.#vPrefix(key);
    const wp = this.#wPrefix(key);
    const holderKv = kvs(h)[0];
    const values = kvs(v).map((kv) => {
      const secret = kv.key.slice(vp.length);
      return { secret, name: sessionName(secret), value: kv.value, create: kv.create };
    }).sort((a, b) => a.create - b.create);
    const waiters = (w === undefined ? [] : kvs(w)).map((kv) => {
      let value: string | null = null;
      try {
        const parsed = JSON.parse(kv.value) as { v?: unknown };
        if (typeof parsed.v === "string") value = parsed.v;
      } catch {
        // exclusive
      }
      return { secret: kv.key.slice(wp.length), value, create: kv.create };
    }).sort((a, b) => a.create - b.create);
    return {
      rev,
      holder: holderKv === undefined ? null : holderOf(holderKv.value),
      values,
      waiters,
    };
  }

  #unavailable(view: KeyView): LockResult {
    if (view.holder !== null) return { kind: "unavailable", holders: [view.holder.n], value: null };
    return {
      kind: "unavailable",
      holders: view.values.map((v) => v.name),
      value: view.values[0]?.value ?? null,
    };
  }

  async lock(
    session: EtcdSession,
    key: string,
    value: string | null,
    waitMs: number,
  ): Promise<LockResult> {
    this.#live(session);
    session.cancelled = false;
    if (session.settling !== undefined) await session.settling;
    if (value !== null) return await this.#lockValue(session, key, value, waitMs);
    if (session.values.has(key)) return CONFLICT;
    const h = this.#hKey(key);
    const token = session.held.get(key);
    if (token !== undefined) {
      // Re-entrant: still ours?
      const t = await this.#txn([this.#mine(session, key, token)], []);
      if (t.succeeded) return ACQUIRED;
      session.held.delete(key);
    }
    if (session.held.size >= this.#maxHeld) {
      return { kind: "limit", what: "held", limit: this.#maxHeld };
    }
    const wp = this.#wPrefix(key);
    const vp = this.#vPrefix(key);
    const me = wp + session.secret;
    const queue = waitMs > 0;
    let t: TxnAnswer;
    try {
      t = await this.#txn(
        [
          cmp(h, "CREATE", "EQUAL", "create_revision", 0),
          cmpRange(wp, prefixEnd(wp), "VERSION", "EQUAL", "version", 0),
          cmpRange(vp, prefixEnd(vp), "VERSION", "EQUAL", "version", 0),
        ],
        [
          put(h, this.#holderValue(session), session.lease),
          put(this.#oKey(session.secret, key), "", session.lease),
        ],
        queue
          ? [
            put(me, JSON.stringify({ n: session.id, v: null }), session.lease),
            range(h),
            range(vp, prefixEnd(vp), true),
            range(me),
            range(wp, prefixEnd(wp), true),
            put(this.#qKey(session.secret), key, session.lease),
            range(this.#oKey(session.secret, key)),
          ]
          : [range(h), range(vp, prefixEnd(vp), true), range(this.#oKey(session.secret, key))],
      );
    } catch (e) {
      if (e instanceof EtcdRequestError && e.code === 5) this.#lose(session);
      else session.uncertain = true;
      throw wrap(e);
    }
    if (t.succeeded) {
      session.held.set(key, t.revision);
      return ACQUIRED;
    }
    const at = queue ? 1 : 0;
    const holder = kvs(t.responses[at])[0];
    const held = holder === undefined ? null : holderOf(holder.value);
    const rev = queue ? kvs(t.responses[3])[0]?.create ?? t.revision : 0;
    const ownToken = this.#tokenIn(t.responses[queue ? 6 : 2]);
    if (held !== null && held.s === session.secret && ownToken !== null) {
      // A grant whose answer was lost earlier: it is ours.
      session.held.set(key, ownToken);
      if (queue) await this.#withdraw(session, key, rev).catch(() => null);
      return ACQUIRED;
    }
    if (count(t.responses[at + 1]) > 0) {
      // Held in the other mode (value locks).
      if (queue && await this.#withdrawOrGranted(session, key, rev)) return ACQUIRED;
      return CONFLICT;
    }
    const unavailable: LockResult = {
      kind: "unavailable",
      holders: held === null ? [] : [held.n],
      value: null,
    };
    const deadlock = await this.#deadlock(session, key, queue ? rev : null);
    if (deadlock !== null) return deadlock;
    if (!queue) return unavailable;
    if (count(t.responses[4]) > this.#maxWaiters) {
      if (await this.#withdrawOrGranted(session, key, rev)) return ACQUIRED;
      return { kind: "limit", what: "waiters", limit: this.#maxWaiters };
    }
    return this.#wait(session, key, null, rev, Math.min(waitMs, MAX_WAIT_MS), t.revision);
  }

  /**
   * A value lock: read the key, decide as the memory table would, then
   * commit conditioned on nothing having been created in the key's ranges
   * since the read (deletions only ever free a key).
   */
  async #lockValue(
    session: EtcdSession,
    key: string,
    value: string,
    waitMs: number,
  ): Promise<LockResult> {
    if (session.held.has(key) && !session.values.has(key)) return CONFLICT;
    const vp = this.#vPrefix(key);
    const wp = this.#wPrefix(key);
    let view: KeyView | null = null;
    for (let attempt = 0; attempt < 8; attempt++) {
      view = await this.#state(key);
      if (view.holder !== null) return CONFLICT;
      const mine = view.values.find((v) => v.secret === session.secret);
      if (mine !== undefined) {
        if (mine.value !== value) return this.#unavailable(view);
        session.held.set(key, mine.create);
        session.values.set(key, value);
        return ACQUIRED;
      }
      session.held.delete(key);
      session.values.delete(key);
      if (session.held.size >= this.#maxHeld) {
        return { kind: "limit", what: "held", limit: this.#maxHeld };
      }
      const group = view.values[0]?.value;
      if ((group === undefined || group === value) && view.waiters.length === 0) {
        let t: TxnAnswer;
        try {
          t = await this.#txn(this.#unchanged(key, view.rev), [
            put(vp + session.secret, value, session.lease),
            put(this.#oKey(session.secret, key), "v:" + value, session.lease),
          ]);
        } catch (e) {
          session.uncertain = true;
          throw wrap(e);
        }
        if (t.succeeded) {
          session.held.set(key, t.revision);
          session.values.set(key, value);
          return ACQUIRED;
        }
        continue; // something changed: read again
      }
      break;
    }
    if (waitMs <= 0 || view === null) {
      return await this.#deadlock(session, key, null) ?? this.#unavailable(view!);
    }
    const me = wp + session.secret;
    const t = await this.#txn([], [
      put(me, JSON.stringify({ n: session.id, v: value }), session.lease),
      range(me),
      range(wp, prefixEnd(wp), true),
      put(this.#qKey(session.secret), key, session.lease),
    ]);
    const rev = kvs(t.responses[1])[0]?.create ?? t.revision;
    const deadlock = await this.#deadlock(session, key, rev);
    if (deadlock !== null) return deadlock;
    if (count(t.responses[2]) > this.#maxWaiters) {
      await this.#withdraw(session, key, rev).catch(() => this.#withdrawLater(session, key, rev));
      return { kind: "limit", what: "waiters", limit: this.#maxWaiters };
    }
    return this.#wait(session, key, value, rev, Math.min(waitMs, MAX_WAIT_MS), t.revision);
  }

  /** Compares: no exclusive holder, and nothing created among the key's value holders and waiters since `rev`. */
  #unchanged(key: string, rev: number): Json[] {
    const vp = this.#vPrefix(key);
    const wp = this.#wPrefix(key);
    return [
      cmp(this.#hKey(key), "CREATE", "EQUAL", "create_revision", 0),
      cmpRange(vp, prefixEnd(vp), "CREATE", "LESS", "create_revision", rev + 1),
      cmpRange(wp, prefixEnd(wp), "CREATE", "LESS", "create_revision", rev + 1),
    ];
  }

  #wait(
    session: EtcdSession,
    key: string,
    value: string | null,
    rev: number,
    waitMs: number,
    seenAt: number,
  ): Promise<LockResult> {
    let resolve!: (r: LockResult) => void;
    const done = new Promise<LockResult>((r) => resolve = r);
    const wait: Wait = {
      session,
      key,
      value,
      rev,
      done,
      resolve,
      finished: false,
      busy: false,
      again: false,
      leaving: false,
      timer: undefined,
      poll: undefined,
    };
    session.waiting = wait;
    let set = this.#waits.get(key);
    if (set === undefined) this.#waits.set(key, set = new Set());
    set.add(wait);
    wait.timer = setTimeout(() => this.#leave(wait), waitMs);
    wait.poll = setInterval(() => this.#tryGrant(wait), POLL_MS);
    if (session.cancelled) {
      // The connection went while the request was on its way.
      this.#leave(wait);
      return done;
    }
    const handed = session.handed;
    if (value === null && handed !== undefined && handed.key === key && handed.rev > rev) {
      // Handed to this wait before it was set up.
      session.handed = undefined;
      session.held.set(key, handed.rev);
      this.#finish(wait, ACQUIRED);
      return done;
    }
    // The watch may already be past our enqueue: look now.
    if (this.#watchRev >= seenAt || value !== null) this.#tryGrant(wait);
    return done;
  }

  #finish(wait: Wait, result: LockResult): void {
    if (wait.finished) return;
    wait.finished = true;
    clearTimeout(wait.timer);
    clearInterval(wait.poll);
    if (wait.session.waiting === wait) wait.session.waiting = null;
    const set = this.#waits.get(wait.key);
    set?.delete(wait);
    if (set?.size === 0) this.#waits.delete(wait.key);
    wait.resolve(result);
  }

  /** Tries to grant `wait` its key: one transaction, conditioned on being first. */
  #tryGrant(wait: Wait): void {
    if (wait.finished || wait.leaving || this.#closed) return;
    if (wait.busy) {
      wait.again = true;
      return;
    }
    wait.busy = true;
    const attempt = wait.value === null ? this.#grantExclusive(wait) : this.#grantValue(wait);
    attempt.then((retry) => {
      if (retry) wait.again = true;
    }, () => {
      // etcd unreachable: the poll tries again.
    }).finally(() => {
      wait.busy = false;
      if (wait.leaving && !wait.finished) this.#leave(wait);
      else if (wait.again) {
        wait.again = false;
        this.#tryGrant(wait);
      }
    });
  }

  async #grantExclusive(wait: Wait): Promise<boolean> {
    const { session, key, rev } = wait;
    const h = this.#hKey(key);
    const wp = this.#wPrefix(key);
    const vp = this.#vPrefix(key);
    const me = wp + session.secret;
    const t = await this.#txn(
      [
        cmp(h, "CREATE", "EQUAL", "create_revision", 0),
        cmpRange(vp, prefixEnd(vp), "VERSION", "EQUAL", "version", 0),
        cmpRange(wp, prefixEnd(wp), "CREATE", "GREATER", "create_revision", rev - 1),
        cmp(me, "CREATE", "EQUAL", "create_revision", rev),
      ],
      [
        put(h, this.#holderValue(session), session.lease),
        put(this.#oKey(session.secret, key), "", session.lease),
        del(me),
        del(this.#qKey(session.secret)),
      ],
      [range(me), range(h), range(this.#oKey(session.secret, key))],
    );
    if (t.succeeded) {
      session.held.set(key, t.revision);
      this.#finish(wait, ACQUIRED);
    } else if (kvs(t.responses[0]).length === 0) {
      // Our waiter key is gone: handed the key by its holder's unlock, granted by an attempt
      // whose answer was lost, or our lease expired.
      const holder = kvs(t.responses[1])[0];
      const held = holder === undefined ? null : holderOf(holder.value);
      const token = this.#tokenIn(t.responses[2]);
      if (held !== null && held.s === session.secret && token !== null) {
        session.held.set(key, token);
        this.#finish(wait, ACQUIRED);
      } else {
        this.#finish(wait, {
          kind: "unavailable",
          holders: held === null ? [] : [held.n],
          value: null,
        });
      }
    }
    return false;
  }

  /**
   * A value waiter goes when the key is free and it is the oldest waiter, or
   * when the key is held with its value, it was queued before that group
   * formed, and it is the oldest such waiter.
   */
  async #grantValue(wait: Wait): Promise<boolean> {
    const { session, key, rev } = wait;
    const value = wait.value!;
    const view = await this.#state(key);
    const me = this.#wPrefix(key) + session.secret;
    if (!view.waiters.some((w) => w.secret === session.secret)) {
      const mine = view.values.find((v) => v.secret === session.secret);
      if (mine !== undefined && mine.value === value) {
        session.held.set(key, mine.create);
        session.values.set(key, value);
        this.#finish(wait, ACQUIRED);
      } else this.#finish(wait, this.#unavailable(view));
      return false;
    }
    const group = view.values[0]?.value;
    if (view.holder !== null || (group !== undefined && group !== value)) return false;
    // One at a time, oldest first: the holders of a group are listed in the order they waited
    // (as on the memory table), not in the order concurrent grants happened to commit.
    if (group === undefined) {
      // The key is free: its oldest waiter picks the next value.
      if (view.waiters[0]!.secret !== session.secret) return false;
    } else {
      // Held with this value: every waiter for it that was queued before the group formed joins
      // it (as the memory table grants them together), past waiters for other values.
      if (rev > view.values[0]!.create) return false;
      if (view.waiters.find((w) => w.value === value)?.secret !== session.secret) return false;
    }
    const t = await this.#txn([
      ...this.#unchanged(key, view.rev),
      cmp(me, "CREATE", "EQUAL", "create_revision", rev),
    ], [
      put(this.#vPrefix(key) + session.secret, value, session.lease),
      put(this.#oKey(session.secret, key), "v:" + value, session.lease),
      del(me),
      del(this.#qKey(session.secret)),
    ]);
    if (!t.succeeded) return true; // something changed since the read: again
    session.held.set(key, t.revision);
    session.values.set(key, value);
    this.#finish(wait, ACQUIRED);
    return false;
  }

  /** Withdraws `wait` (deadline, cancel): deletes its waiter key unless it was granted. */
  #leave(wait: Wait): void {
    wait.leaving = true;
    clearTimeout(wait.timer);
    clearInterval(wait.poll);
    if (wait.busy || wait.finished) return;
    wait.busy = true;
    const { session, key, rev } = wait;
    const h = this.#hKey(key);
    const vp = this.#vPrefix(key);
    const me = this.#wPrefix(key) + session.secret;
    this.#txn([cmp(me, "CREATE", "EQUAL", "create_revision", rev)], [
      del(me),
      range(h),
      range(vp, prefixEnd(vp)),
      del(this.#qKey(session.secret)),
    ], [range(h), range(vp, prefixEnd(vp)), range(this.#oKey(session.secret, key))]).then((t) => {
      const at = t.succeeded ? 1 : 0;
      const view = this.#view(t.revision, t.responses[at], t.responses[at + 1], undefined, key);
      if (!t.succeeded) {
        // Our waiter key is gone: handed the key by its holder's unlock, or granted by an
        // attempt whose answer was lost? Then it is ours (the grant came before the withdrawal).
        const token = this.#tokenIn(t.responses[2]);
        if (wait.value === null && view.holder?.s === session.secret && token !== null) {
          session.held.set(key, token);
          this.#finish(wait, ACQUIRED);
          return;
        }
        const mine = view.values.find((v) => v.secret === session.secret);
        if (wait.value !== null && mine?.value === wait.value) {
          session.held.set(key, mine.create);
          session.values.set(key, wait.value);
          this.#finish(wait, ACQUIRED);
          return;
        }
      }
      this.#finish(wait, this.#unavailable(view));
    }, () => {
      // etcd unreachable: answer now, delete the waiter key when etcd is back.
      this.#withdrawLater(session, key, rev);
      this.#finish(wait, { kind: "unavailable", holders: [], value: null });
    }).finally(() => {
      wait.busy = false;
    });
  }

  /**
   * Deletes `session`'s waiter key of `key` (created at `rev`). Resolves to the
   * fencing token when the key was found gone because the session was handed
   * the lock meanwhile (by its holder's unlock), else null.
   */
  async #withdraw(session: EtcdSession, key: string, rev: number): Promise<number | null> {
    const me = this.#wPrefix(key) + session.secret;
    const t = await this.#txn([cmp(me, "CREATE", "EQUAL", "create_revision", rev)], [
      del(me),
      del(this.#qKey(session.secret)),
    ], [range(this.#hKey(key)), range(this.#oKey(session.secret, key))]);
    if (t.succeeded) return null;
    const holder = kvs(t.responses[0])[0];
    return holder !== undefined && holderOf(holder.value)?.s === session.secret
      ? this.#tokenIn(t.responses[1])
      : null;
  }

  /**
   * Withdraws a wait that was already answered "not acquired", once etcd
   * answers again; a key handed over meanwhile is released.
   */
  #withdrawLater(session: EtcdSession, key: string, rev: number): void {
    session.uncertain = true;
    // As long as it takes (a waiter key left behind would be handed the key later).
    const settling = this.#retry(async () => {
      const token = await this.#withdraw(session, key, rev);
      if (token === null) return;
      // Released only while the session record is as this server last wrote it (not resumed
      // elsewhere, where the key may have been reported held).
      await this.#txn([
        this.#mine(session, key, token),
        cmp(this.#sKey(session.secret), "MOD", "EQUAL", "mod_revision", session.rev),
      ], [
        del(this.#hKey(key)),
        del(this.#oKey(session.secret, key)),
      ]);
    }, Infinity);
    // The session's next commands wait for it: none may be told it holds what this releases.
    const held = settling.catch(() => {}).finally(() => {
      if (session.settling === held) session.settling = undefined;
    });
    session.settling = held;
    this.#chore(settling);
  }

  /**
   * Withdraws an exclusive wait that is answered without waiting (conflict,
   * limit, deadlock). True when the key was handed to the session before
   * the withdrawal: then it holds the key (recorded) and the answer is
   * "acquired". An unreachable etcd leaves the waiter to its lease and the
   * session uncertain.
   */
  async #withdrawOrGranted(session: EtcdSession, key: string, rev: number): Promise<boolean> {
    let token: number | null;
    try {
      token = await this.#withdraw(session, key, rev);
    } catch {
      this.#withdrawLater(session, key, rev);
      return false;
    }
    if (token === null) return false;
    session.held.set(key, token);
    return true;
  }

  /**
   * Deadlock detection across servers: when `session` (which holds keys)
   * is refused `key`, follows "held by X, X waits for Y" through etcd
   * (`q/SECRET` says what a session waits for) back to `session`. With
   * `myRev` (the request is queued at that revision) the cycle is answered
   * only by its youngest waiter, which withdraws: two waits that close one
   * cycle at once, on two servers, see it both, and exactly one of them
   * gives up (the older one keeps waiting, and is then granted).
   */
  async #deadlock(
    session: EtcdSession,
    key: string,
    myRev: number | null,
  ): Promise<LockResult | null> {
    if (!this.#detectDeadlocks || session.held.size === 0) return null;
    interface Link {
      name: string;
      waitsFor: string;
      rev: number;
    }
    let frontier: { key: string; chain: Link[] }[] = [{ key, chain: [] }];
    const seen = new Set<string>();
    let budget = 10_000;
    try {
      while (frontier.length > 0 && budget > 0) {
        const next: { secret: string; name: string; chain: Link[] }[] = [];
        for (let i = 0; i < frontier.length; i += TXN_OPS / 2) {
          const chunk = frontier.slice(i, i + TXN_OPS / 2);
          const t = await this.#txn(
            [],
            chunk.flatMap((f) => {
              const vp = this.#vPrefix(f.key);
              return [range(this.#hKey(f.key)), range(vp, prefixEnd(vp), false)];
            }),
          );
          for (let j = 0; j < chunk.length; j++) {
            const f = chunk[j]!;
            const view = this.#view(
              t.revision,
              t.responses[2 * j],
              t.responses[2 * j + 1],
              undefined,
              f.key,
            );
            const holders = view.holder !== null
              ? [{ secret: view.holder.s, name: view.holder.n }]
              : view.values.map((v) => ({ secret: v.secret, name: v.name }));
            for (const x of holders) {
              if (x.secret === session.secret) {
                if (myRev !== null && f.chain.some((l) => l.rev > myRev)) return null;
                let path = `#${session.id} => ${key}`;
                for (const l of f.chain) path += ` = #${l.name} => ${l.waitsFor}`;
                if (myRev !== null && await this.#withdrawOrGranted(session, key, myRev)) {
                  return ACQUIRED;
                }
                return { kind: "deadlock", path: `${path} = #${session.id}` };
              }
              if (seen.has(x.secret)) continue;
              seen.add(x.secret);
              next.push({ ...x, chain: f.chain });
            }
          }
        }
        frontier = [];
        for (let i = 0; i < next.length; i += TXN_OPS) {
          const chunk = next.slice(i, i + TXN_OPS);
          const t = await this.#txn([], chunk.map((n) => range(this.#qKey(n.secret))));
          budget -= chunk.length;
          chunk.forEach((n, j) => {
            const q = kvs(t.responses[j])[0];
            if (q !== undefined) {
              frontier.push({
                key: q.value,
                chain: [...n.chain, { name: n.name, waitsFor: q.value, rev: q.create }],
              });
            }
          });
        }
      }
    } catch {
      // etcd unreachable: no deadlock found (the wait goes on, or the lock is refused).
    }
    return null;
  }

  /** The key of `session`'s hold on `key` (exclusive or value). */
  #holdKey(session: EtcdSession, key: string, value: boolean): string {
    return value ? this.#vPrefix(key) + session.secret : this.#hKey(key);
  }

  async unlock(session: EtcdSession, key: string): Promise<UnlockResult> {
    this.#live(session);
    if (session.settling !== undefined) await session.settling;
    const h = this.#hKey(key);
    const vp = this.#vPrefix(key);
    const wp = this.#wPrefix(key);
    const own = this.#oKey(session.secret, key);
    let token = session.held.get(key);
    let isValue = session.values.has(key);
    if (token === undefined) {
      const t = await this.#txn([], [range(own), range(h), range(vp, prefixEnd(vp))]);
      const mine = kvs(t.responses[0])[0];
      if (mine === undefined) {
        return this.#notMine(
          this.#view(t.revision, t.responses[1], t.responses[2], undefined, key),
        );
      }
      token = mine.create;
      isValue = mine.value.startsWith("v:");
    }
    // An exclusive hold goes to its oldest waiter in the same transaction, when that one waits
    // exclusively: first the one the watch showed, then (once) the one etcd answered.
    let next = isValue ? null : this.#nextHint(key, session);
    for (let attempt = 0;; attempt++) {
      const compare = [this.#mine(session, key, token)];
      const ops = [del(this.#holdKey(session, key, isValue)), del(own)];
      if (next !== null) {
        const them = wp + next.secret;
        compare.push(
          // That very waiter (a waiter key written again keeps its create revision, not its mod),
          cmp(them, "MOD", "EQUAL", "mod_revision", next.mod),
          // the oldest,
          cmpRange(wp, prefixEnd(wp), "CREATE", "GREATER", "create_revision", next.create - 1),
          // and its session waits for this key.
          cmp(this.#qKey(next.secret), "VALUE", "EQUAL", "value", b64(key)),
        );
        ops.splice(
          0,
          1,
          put(h, this.#holderValue({ id: next.n, secret: next.secret }), next.lease),
          put(this.#oKey(next.secret, key), "", next.lease),
          del(them),
          del(this.#qKey(next.secret)),
          // Tells the waiter's server (its watch of puts under w/).
          put(this.prefix + "w/!/" + next.secret, JSON.stringify({ k: key }), next.lease),
        );
      }
      const t = await this.#txn(compare, ops, [
        range(own),
        range(h),
        range(vp, prefixEnd(vp)),
        range(wp, prefixEnd(wp)),
      ]);
      if (t.succeeded) {
        session.held.delete(key);
        session.values.delete(key);
        return { kind: "released" };
      }
      if (this.#tokenIn(t.responses[0]) === token) {
        // Still ours: the waiter we tried is gone, changed or not the oldest. Once, what etcd
        // has now; then a plain release (which fails only when the key is not ours).
        if (attempt === 0 && next !== null) {
          const hints = kvs(t.responses[3]).flatMap((kv) => this.#hintOf(kv, key) ?? []);
          this.#hints.set(key, new Map(hints.map((w) => [w.secret, w])));
          if (hints.length === 0) this.#hints.delete(key);
          next = this.#nextHint(key, session);
        } else next = null;
        continue;
      }
      session.held.delete(key);
      session.values.delete(key);
      return this.#notMine(this.#view(t.revision, t.responses[1], t.responses[2], undefined, key));
    }
  }

  /** The answer to an unlock of a key the session does not hold. */
  #notMine(view: KeyView): UnlockResult {
    if (view.holder !== null) return { kind: "not_yours", holders: [view.holder.n] };
    if (view.values.length > 0) {
      return { kind: "not_yours", holders: view.values.map((v) => v.name) };
    }
    return { kind: "not_locked" };
  }

  fence(session: EtcdSession, key: string): Promise<number | null> | number | null {
    const token = session.held.get(key);
    if (token === undefined || session.lost) return null;
    // Still ours in etcd? (a token is only worth what etcd says)
    return this.#txn([this.#mine(session, key, token)], [])
      .then((t) => {
        if (t.succeeded) return token;
        session.held.delete(key);
        session.values.delete(key);
        return null;
      });
  }

  async unlockAll(session: EtcdSession): Promise<void> {
    this.#live(session);
    if (session.settling !== undefined) await session.settling;
    const held = new Map<string, [number, boolean]>();
    for (const [k, token] of session.held) held.set(k, [token, session.values.has(k)]);
    if (session.uncertain) {
      const o = this.prefix + "o/" + session.secret + "/";
      const t = await this.#txn([], [range(o, prefixEnd(o))]);
      for (const kv of kvs(t.responses[0])) {
        held.set(kv.key.slice(o.length), [kv.create, kv.value.startsWith("v:")]);
      }
      session.uncertain = false;
    }
    await this.#releaseAll(session, held);
  }

  async #releaseAll(session: EtcdSession, held: Map<string, [number, boolean]>): Promise<void> {
    const entries = [...held];
    const ops = ([k, [, isValue]]: [string, [number, boolean]]) => [
      del(this.#holdKey(session, k, isValue)),
      del(this.#oKey(session.secret, k)),
    ];
    const compare = ([k, [token]]: [string, [number, boolean]]) => this.#mine(session, k, token);
    for (let i = 0; i < entries.length; i += TXN_OPS / 2) {
      const chunk = entries.slice(i, i + TXN_OPS / 2);
      const t = await this.#txn(chunk.map(compare), chunk.flatMap(ops));
      if (!t.succeeded) {
        // Some key is no longer ours (its lease ran out): one by one.
        for (const entry of chunk) await this.#txn([compare(entry)], ops(entry));
      }
      for (const [k] of chunk) {
        session.held.delete(k);
        session.values.delete(k);
      }
    }
  }

  cancelWait(session: EtcdSession): void {
    const wait = session.waiting;
    if (wait !== null) this.#leave(wait);
    else session.cancelled = true;
  }

  async disconnect(session: EtcdSession): Promise<void> {
    if (!session.connected) return;
    const wait = session.waiting;
    if (wait !== null) {
      this.#leave(wait);
      await wait.done;
    }
    session.connected = false;
    session.disconnectedAt = Date.now();
    clearTimeout(session.keepalive);
    session.keepalive = undefined;
    if (this.#abandoned || session.lost) {
      this.#sessions.delete(session.secret);
      return;
    }
    if (session.releaseTimeout <= 0 && !this.#closed) {
      this.#sessions.delete(session.secret);
      await this.#retry(() => this.#revoke(session.lease), 3).catch(() => {});
      if (session.extraLease !== undefined) await this.#revoke(session.extraLease).catch(() => {});
      return;
    }
    try {
      // From now on the lease runs down: a full TTL (≥ the release timeout) from here.
      await this.#refresh(session);
      const t = await this.#txn(
        [cmp(this.#sKey(session.secret), "MOD", "EQUAL", "mod_revision", session.rev)],
        [put(this.#sKey(session.secret), this.#sessionValue(session), session.lease)],
      );
      if (!t.succeeded) {
        this.#sessions.delete(session.secret);
        return;
      }
      session.rev = t.revision;
    } catch {
      // etcd unreachable: the lease runs down on its own.
    }
    if (this.#closed) return;
    session.expiry = setTimeout(
      () => this.#chore(this.#expire(session)),
      Math.min(session.releaseTimeout, MAX_WAIT_MS),
    );
  }

  /** The release timeout of a disconnected session passed: end it unless it was resumed. */
  async #expire(session: EtcdSession): Promise<void> {
    session.expiry = undefined;
    if (session.connected || this.#closed) return;
    this.#sessions.delete(session.secret);
    await this.#retry(async () => {
      const t = await this.#txn(
        [cmp(this.#sKey(session.secret), "MOD", "EQUAL", "mod_revision", session.rev)],
        [del(this.#sKey(session.secret))],
      );
      if (t.succeeded) await this.#revoke(session.lease);
      if (t.succeeded && session.extraLease !== undefined) await this.#revoke(session.extraLease);
    }, 5);
  }

  async #revoke(lease: string): Promise<void> {
    try {
      await this.gateway.call("/lease/revoke", { ID: lease });
    } catch (e) {
      if (e instanceof EtcdRequestError) return; // already gone
      throw e;
    }
  }

  async #retry(f: () => Promise<void>, times = 10): Promise<void> {
    for (let i = 0;; i++) {
      try {
        return await f();
      } catch (e) {
        if (
          i + 1 >= times || this.#abandoned || this.#closed || !(e instanceof StoreUnavailableError)
        ) throw e;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  #chore(p: Promise<unknown>): void {
    const q = p.catch(() => {}).finally(() => this.#chores.delete(q));
    this.#chores.add(q);
  }

  async resume(
    current: EtcdSession,
    secret: string,
  ): Promise<{ result: ResumeResult; session: EtcdSession }> {
    if (secret === current.secret) return { result: "same", session: current };
    if (current.held.size > 0) return { result: "holds_locks", session: current };
    this.#live(current);
    const sKey = this.#sKey(secret);
    const local = this.#sessions.get(secret);
    // A session attached to another server that is alive is active. One
    // attached to a server that died (its connection with it) is taken over
    // once that server's lease has run out: wait up to that long.
    const deadline = Date.now() + SERVER_TTL_SECONDS * 1000 + 1000;
    let kv: Kv | undefined;
    let v: { n: string; rt: number; l: string; c: string | null; p?: unknown; m?: unknown };
    for (;;) {
      const r = await this.#txn([], [range(sKey)]);
      kv = kvs(r.responses[0])[0];
      if (kv === undefined) return { result: "unknown", session: current };
      try {
        v = JSON.parse(kv.value);
      } catch {
        return { result: "unknown", session: current };
      }
      if (v.c === null) break;
      if (v.c === this.serverId) {
        if (local?.connected === true) return { result: "active", session: current };
        break;
      }
      const srv = await this.#txn([], [range(this.prefix + "srv/" + v.c, undefined, true)]);
      if (count(srv.responses[0]) === 0) break;
      if (Date.now() > deadline) return { result: "active", session: current };
      await new Promise((r) => setTimeout(r, 250));
    }
    if (local !== undefined) {
      clearTimeout(local.expiry);
      local.expiry = undefined;
    }
    const target: EtcdSession = local ?? {
      id: v.n,
      secret,
      releaseTimeout: v.rt,
      held: new Map(),
      values: new Map(),
      lease: v.l,
      ttl: leaseTtl(v.rt),
      rev: kv.mod,
      connected: false,
      lost: false,
      uncertain: false,
      waiting: null,
      cancelled: false,
      keepalive: undefined,
      expiry: undefined,
      disconnectedAt: 0,
      peer: typeof v.p === "string" ? v.p : undefined,
      name: typeof v.m === "string" ? v.m : undefined,
    };
    target.releaseTimeout = v.rt;
    // Where it connects from now: this connection (written with the resume below).
    if (current.peer !== undefined) target.peer = current.peer;
    target.lease = v.l;
    target.connected = true;
    target.lost = false;
    const o = this.prefix + "o/" + secret + "/";
    const q = this.#qKey(secret);
    let t: TxnAnswer;
    try {
      // A waiter key the session left behind (a withdrawal etcd did not answer) goes with the
      // resume, in its transaction: a hand-off to it came before (then the key is listed as
      // held below) or cannot come any more.
      for (let attempt = 1;; attempt++) {
        const left = kvs((await this.#txn([], [range(q)])).responses[0])[0];
        const ops = [put(sKey, this.#sessionValue(target), target.lease)];
        if (left !== undefined) ops.push(del(q), del(this.#wPrefix(left.value) + secret));
        ops.push(range(o, prefixEnd(o)));
        t = await this.#txn(
          [
            cmp(sKey, "MOD", "EQUAL", "mod_revision", kv.mod),
            left === undefined
              ? cmp(q, "CREATE", "EQUAL", "create_revision", 0)
              : cmp(q, "MOD", "EQUAL", "mod_revision", left.mod),
          ],
          ops,
          [range(sKey)],
        );
        // The waiter key changed meanwhile (its hand-off, or its withdrawal): once more.
        if (t.succeeded || attempt === 3 || kvs(t.responses[0])[0]?.mod !== kv.mod) break;
      }
    } catch (e) {
      target.connected = false;
      throw wrap(e);
    }
    if (!t.succeeded) {
      target.connected = false;
      return { result: "unknown", session: current };
    }
    target.rev = t.revision;
    target.held.clear();
    target.values.clear();
    for (const held of kvs(t.responses[t.responses.length - 1])) {
      const k = held.key.slice(o.length);
      target.held.set(k, held.create);
      if (held.value.startsWith("v:")) target.values.set(k, held.value.slice(2));
    }
    this.#sessions.set(secret, target);
    // The resumed session's lease is ours to keep alive now; `current` goes.
    await this.#refresh(target).catch(() => {});
    this.#keepAlive(target);
    clearTimeout(current.keepalive);
    current.connected = false;
    this.#sessions.delete(current.secret);
    this.#chore(this.#retry(() => this.#revoke(current.lease), 3));
    return { result: "resumed", session: target };
  }

  async setReleaseTimeout(session: EtcdSession, ms: number): Promise<void> {
    this.#live(session);
    // A withdrawal left for later compares on s/ too: a write of s/ now would make it fail.
    if (session.settling !== undefined) await session.settling;
    const ttl = leaseTtl(ms);
    const old = session.lease;
    const before = session.releaseTimeout;
    session.releaseTimeout = ms;
    const sKey = this.#sKey(session.secret);
    let granted: string | undefined;
    try {
      if (ttl === session.ttl) {
        const t = await this.#txn([cmp(sKey, "MOD", "EQUAL", "mod_revision", session.rev)], [
          put(sKey, this.#sessionValue(session), session.lease),
        ]);
        if (!t.succeeded) throw new StoreUnavailableError("session changed in etcd");
        session.rev = t.revision;
        return;
      }
      // A new lease of the right TTL; every key of the session moves to it.
      const grant = await this.gateway.call("/lease/grant", { TTL: String(ttl) });
      const lease = String(grant.ID);
      granted = lease;
      session.lease = lease;
      const t = await this.#txn([cmp(sKey, "MOD", "EQUAL", "mod_revision", session.rev)], [
        put(sKey, this.#sessionValue(session), lease),
      ]);
      if (!t.succeeded) {
        session.lease = old;
        this.#chore(this.#revoke(lease));
        throw new StoreUnavailableError("session changed in etcd");
      }
      session.rev = t.revision;
      session.ttl = Number(grant.TTL ?? ttl);
      const entries = [...session.held];
      for (let i = 0; i < entries.length; i += TXN_OPS / 2) {
        const chunk = entries.slice(i, i + TXN_OPS / 2);
        for (const [k, token] of chunk) {
          const value = session.values.get(k);
          const hold = this.#holdKey(session, k, value !== undefined);
          const moved = await this.#txn(
            [this.#mine(session, k, token)],
            [
              { request_put: { key: b64(hold), ignore_value: true, lease } },
              put(this.#oKey(session.secret, k), value === undefined ? "" : "v:" + value, lease),
            ],
          );
          if (!moved.succeeded) {
            session.held.delete(k);
            session.values.delete(k);
          }
        }
      }
      this.#chore(this.#retry(() => this.#revoke(old), 3));
      this.#keepAlive(session);
    } catch (e) {
      if (session.lease === old) session.releaseTimeout = before;
      else if (granted !== undefined) {
        // Half-way (the session record's write, or a key's move, has no answer): keep both
        // leases alive, so that nothing of the session runs out unseen.
        session.extraLease = session.lease === granted ? old : granted;
      }
      throw wrap(e);
    }
  }

  async setName(session: EtcdSession, name: string): Promise<void> {
    this.#live(session);
    // A withdrawal left for later compares on s/ too: a write of s/ now would make it fail.
    if (session.settling !== undefined) await session.settling;
    const before = session.name;
    session.name = name;
    const sKey = this.#sKey(session.secret);
    try {
      const t = await this.#txn([cmp(sKey, "MOD", "EQUAL", "mod_revision", session.rev)], [
        put(sKey, this.#sessionValue(session), session.lease),
      ]);
      if (!t.succeeded) throw new StoreUnavailableError("session changed in etcd");
      session.rev = t.revision;
    } catch (e) {
      session.name = before;
      throw wrap(e);
    }
  }

  async forceUnlock(key: string): Promise<ForceUnlockResult> {
    if (this.#closed) throw new StoreUnavailableError("etcd store closed");
    const h = this.#hKey(key);
    const vp = this.#vPrefix(key);
    for (let attempt = 0; attempt < 5; attempt++) {
      const r = await this.#txn([], [range(h), range(vp, prefixEnd(vp))]);
      const exclusive = kvs(r.responses[0])[0];
      const values = kvs(r.responses[1]);
      if (exclusive === undefined && values.length === 0) return { holders: [] };
      // Each hold as read (a change meanwhile makes the transaction fail: read again).
      const compare: Json[] = [];
      const ops: Json[] = [];
      const holders: { n: string; s: string }[] = [];
      if (exclusive !== undefined) {
        compare.push(cmp(h, "MOD", "EQUAL", "mod_revision", exclusive.mod));
        ops.push(del(h));
        const held = holderOf(exclusive.value);
        if (held !== null) holders.push(held);
      }
      for (const kv of values) {
        const secret = kv.key.slice(vp.length);
        compare.push(cmp(kv.key, "MOD", "EQUAL", "mod_revision", kv.mod));
        ops.push(del(kv.key));
        holders.push({ n: sessionName(secret), s: secret });
      }
      for (const held of holders) ops.push(del(this.#oKey(held.s, key)));
      const t = await this.#txn(compare, ops);
      if (!t.succeeded) continue;
      for (const held of holders) {
        const local = this.#sessions.get(held.s);
        local?.held.delete(key);
        local?.values.delete(key);
      }
      return { holders: holders.map((held) => held.n) };
    }
    throw new StoreUnavailableError("force_unlock: the key kept changing");
  }

  async stats(): Promise<StoreStats> {
    const s = this.prefix + "s/";
    const h = this.prefix + "h/";
    const v = this.prefix + "v/";
    const t = await this.#txn([], [
      range(s, prefixEnd(s), true),
      range(h, prefixEnd(h), true),
      { request_range: { key: b64(v), range_end: b64(prefixEnd(v)), keys_only: true } },
    ]);
    // Value-locked keys: the distinct keys among the value holders.
    const valueKeys = new Set(kvs(t.responses[2]).map((kv) => parseLenKey(kv.key.slice(v.length))));
    return { clients: count(t.responses[0]), locks: count(t.responses[1]) + valueKeys.size };
  }

  async debug(): Promise<StoreDebug> {
    const s = this.prefix + "s/";
    const h = this.prefix + "h/";
    const w = this.prefix + "w/";
    const v = this.prefix + "v/";
    const t = await this.#txn([], [
      range(s, prefixEnd(s)),
      range(h, prefixEnd(h)),
      range(w, prefixEnd(w)),
      range(v, prefixEnd(v)),
    ]);
    const now = Date.now();
    const sessions: StoreDebug["sessions"][number][] = [];
    for (const kv of kvs(t.responses[0])) {
      try {
        const v = JSON.parse(kv.value) as {
          n: string;
          rt: number;
          c: string | null;
          d: number;
          p?: unknown;
          m?: unknown;
        };
        sessions.push({
          id: v.n,
          releaseTimeout: v.rt,
          expiresIn: v.c !== null ? null : Math.max(0, v.d + v.rt - now),
          peer: typeof v.p === "string" ? v.p : null,
          name: typeof v.m === "string" ? v.m : null,
        });
      } catch {
        // Not ours.
      }
    }
    // In the order the keys were locked (as the memory table lists them): by creation revision.
    const locks: (StoreDebug["locks"][number] & { create: number })[] = [];
    for (const kv of kvs(t.responses[1])) {
      const held = holderOf(kv.value);
      if (held !== null) {
        locks.push({
          key: kv.key.slice(h.length),
          holders: [held.n],
          value: null,
          create: kv.mod, // the last grant (a hand-off keeps the key's create revision)
        });
      }
    }
    const groups = new Map<string, { holders: string[]; value: string; create: number }[]>();
    for (const kv of kvs(t.responses[3]).sort((a, b) => a.create - b.create)) {
      const rest = kv.key.slice(v.length);
      const key = parseLenKey(rest);
      const secret = rest.slice(rest.indexOf(":") + 1 + key.length + 1);
      let list = groups.get(key);
      if (list === undefined) groups.set(key, list = []);
      if (list[0] === undefined) list.push({ holders: [], value: kv.value, create: kv.create });
      list[0]!.holders.push(sessionName(secret));
    }
    for (const [key, [group]] of groups) {
      locks.push({ key, holders: group!.holders, value: group!.value, create: group!.create });
    }
    locks.sort((a, b) => a.create - b.create);
    const requests = kvs(t.responses[2]).sort((a, b) => a.create - b.create).flatMap((kv) => {
      const rest = kv.key.slice(w.length);
      if (rest.startsWith("!/")) return []; // a hand-off notice
      const colon = rest.indexOf(":");
      const len = Number(rest.slice(0, colon));
      try {
        const v = JSON.parse(kv.value) as { n: string };
        return [{ session: v.n, key: rest.slice(colon + 1, colon + 1 + len) }];
      } catch {
        return [];
      }
    });
    return {
      sessions,
      locks: locks.map(({ key, holders, value }) => ({ key, holders, value })),
      requests,
    };
  }

  publicName(secret: string): string {
    return sessionName(secret);
  }

  /**
   * Stops this server's part: answers every wait "unavailable", detaches
   * every session (their locks then go after their release timeout, by their
   * leases: between one and 1.5 release timeouts), and leaves etcd.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    const detaching = [...this.#sessions.values()].filter((s) => s.connected).map((s) =>
      this.disconnect(s).catch(() => {})
    );
    await Promise.all(detaching);
    this.#closed = true;
    for (const set of [...this.#waits.values()]) {
      for (const w of [...set]) this.#finish(w, { kind: "unavailable", holders: [], value: null });
    }
    for (const s of this.#sessions.values()) {
      clearTimeout(s.keepalive);
      clearTimeout(s.expiry);
    }
    this.#sessions.clear();
    clearTimeout(this.#serverKeepalive);
    this.#watchAbort.abort();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#watchLoop,
      new Promise((r) => timer = setTimeout(r, 1000)),
    ]);
    clearTimeout(timer);
    await Promise.all(this.#chores);
    if (!this.#abandoned) await this.#revoke(this.#serverLease).catch(() => {});
    await this.gateway.close();
  }

  /**
   * Fault injection (tests): behave as if this server's process had been
   * killed. It stops every timer, keepalive and watch and never writes to
   * etcd again; its sessions' leases run out on their own.
   */
  async abandon(): Promise<void> {
    this.#abandoned = true;
    for (const s of this.#sessions.values()) {
      s.connected = false;
      clearTimeout(s.keepalive);
      clearTimeout(s.expiry);
    }
    await this.close();
  }
}

/** The lock key at the start of `LEN:KEY/...`. */
function parseLenKey(rest: string): string {
  const colon = rest.indexOf(":");
  const len = Number(rest.slice(0, colon));
  return rest.slice(colon + 1, colon + 1 + len);
}

function wrap(e: unknown): Error {
  if (e instanceof StoreUnavailableError) return e;
  return new StoreUnavailableError(e instanceof Error ? e.message : String(e), { cause: e });
}
