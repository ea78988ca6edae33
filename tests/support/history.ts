/**
 * The history checker of tests/fault_history_test.ts: pure functions over
 * the holds that worker processes recorded.
 *
 * A hold is one holder's belief that it held one key, from the moment it
 * learned it held it (a lock call resolved, a `withLock` callback started)
 * to the moment it stopped believing it (it called release or unlock, or its
 * handle or session reported the lock lost). Times are ms of the machine's
 * wall clock (`Date.now()`), taken in the process that held the key.
 *
 * @module
 */

/** One holder's belief that it held one key. */
export interface Hold {
  /** Unique in the history, e.g. `w1.t3.17`. */
  readonly id: string;
  readonly key: string;
  /** Who believed it held the key: a task (`w1/t3`) or one process's raw holds (`w1/raw`). */
  readonly holder: string;
  /** The worker process it belongs to. */
  readonly worker: number;
  /** How it was taken: `withLock`, `acquire`, `relock`, `lock`... */
  readonly op: string;
  /** When the holder learned it held the key. */
  readonly start: number;
  /** When it stopped believing so; `null`: it still claims the key. */
  readonly end: number | null;
  /** Why it ended: it let go (`release`), it was told the lock was lost (`lost`), or not yet (`open`). */
  readonly cut: "release" | "lost" | "open";
  /** Free-form detail for failure messages. */
  readonly note?: string;
}

/** Two holds of one key by different holders that overlapped. */
export interface Overlap {
  readonly key: string;
  /** The one that started first. */
  readonly first: Hold;
  readonly second: Hold;
  /** How long both believed they held the key, in ms (`Infinity` when both are still open). */
  readonly ms: number;
  /** Whether both holders belong to one worker process (one client) or to two. */
  readonly scope: "same client" | "across clients";
}

/**
 * The clock tolerance, in ms. Every process reads the same system clock,
 * but each timestamp is rounded to the ms and taken a little after (start)
 * or before (end) the moment it marks, so two processes' readings of one
 * instant can differ by a ms or two. Two holds count as overlapping only
 * when each of them covers more than this much time on the other's side of
 * the other one's edge (see {@linkcode findOverlaps}): a tolerance for
 * jitter, not a statement about speed.
 */
export const OVERLAP_EPSILON_MS = 5;

const endOf = (hold: Hold) => hold.end ?? Infinity;

/**
 * Every pair of holds of one key by different holders that overlapped.
 *
 * Holds `a` (started first) and `b` overlap when they shared some time
 * (`min(ends) > b.start`) and neither clock reading could explain it away:
 * `a.end > b.start + epsilon` and `b.end > a.start + epsilon`. So a hold
 * that starts up to `epsilon` ms before another ends is not counted, but
 * a short hold well inside another one is.
 *
 * @param holds the history
 * @param epsilon the clock tolerance in ms (default {@linkcode OVERLAP_EPSILON_MS})
 * @returns the overlaps, by key and start
 */
export function findOverlaps(
  holds: readonly Hold[],
  epsilon: number = OVERLAP_EPSILON_MS,
): Overlap[] {
  const byKey = new Map<string, Hold[]>();
  for (const hold of holds) {
    const list = byKey.get(hold.key) ?? [];
    list.push(hold);
    byKey.set(hold.key, list);
  }
  const overlaps: Overlap[] = [];
  for (const [key, list] of [...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    list.sort((a, b) => a.start - b.start || endOf(a) - endOf(b));
    let active: Hold[] = [];
    for (const hold of list) {
      // Starts only grow: what ends before this one's start (with the tolerance) overlaps no later one.
      active = active.filter((a) => endOf(a) > hold.start + epsilon);
      for (const a of active) {
        if (a.holder === hold.holder) continue;
        const shared = Math.min(endOf(a), endOf(hold)) - hold.start;
        if (shared > 0 && endOf(hold) > a.start + epsilon) {
          overlaps.push({
            key,
            first: a,
            second: hold,
            ms: shared,
            scope: a.worker === hold.worker ? "same client" : "across clients",
          });
        }
      }
      active.push(hold);
    }
  }
  return overlaps;
}

/**
 * What is wrong with the holds themselves (a harness bug, not a client's):
 * a time that is not a number, an end before its start, a duplicate id.
 *
 * @param holds the history
 * @returns one line per problem
 */
export function malformedHolds(holds: readonly Hold[]): string[] {
  const problems: string[] = [];
  const ids = new Set<string>();
  for (const hold of holds) {
    if (ids.has(hold.id)) problems.push(`duplicate hold id ${hold.id}`);
    ids.add(hold.id);
    if (!Number.isFinite(hold.start)) problems.push(`hold ${hold.id} has no start`);
    if (hold.end !== null && !(hold.end >= hold.start)) {
      problems.push(`hold ${hold.id} ends (${hold.end}) before it starts (${hold.start})`);
    }
    if ((hold.end === null) !== (hold.cut === "open")) {
      problems.push(`hold ${hold.id} is ${hold.cut} with end ${hold.end}`);
    }
  }
  return problems;
}

/** A key the server holds, with the session ids holding it (if the server says). */
export interface ServerLock {
  readonly key: string;
  readonly holders: readonly string[];
}

/**
 * The keys the server still holds that no open hold claims: leaked locks.
 *
 * @param serverLocks what the server holds, after every client went quiet
 * @param holds the history (open holds are claims)
 * @returns the leaked locks
 */
export function unclaimedLocks(
  serverLocks: readonly ServerLock[],
  holds: readonly Hold[],
): ServerLock[] {
  const claimed = new Set(holds.filter((h) => h.end === null).map((h) => h.key));
  return serverLocks.filter((lock) => !claimed.has(lock.key));
}

/**
 * One line for a hold, its times in ms since `origin`.
 *
 * @param hold the hold
 * @param origin the time that is 0
 * @returns e.g. `w1/t3 acquire [1234..1400 release]`
 */
export function describeHold(hold: Hold, origin: number): string {
  const end = hold.end === null ? "still held" : `${hold.end - origin} ${hold.cut}`;
  const note = hold.note === undefined ? "" : ` (${hold.note})`;
  return `${hold.holder} ${hold.op} #${hold.id} [${hold.start - origin}..${end}]${note}`;
}

/**
 * One line for an overlap, its times in ms since `origin`.
 *
 * @param overlap the overlap
 * @param origin the time that is 0
 * @returns the line
 */
export function describeOverlap(overlap: Overlap, origin: number): string {
  return `key ${overlap.key}, ${overlap.ms} ms, ${overlap.scope}: ` +
    `${describeHold(overlap.first, origin)} and ${describeHold(overlap.second, origin)}`;
}
