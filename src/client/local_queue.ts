/**
 * Exclusion inside the process: per key, the client's own requests queue
 * here, first come first served, before one of them asks the server. A
 * session's locks are re-entrant, so without this two tasks sharing one
 * client would both "hold" a key at once.
 *
 * @module
 */

import { DeadlineError } from "../protocol/connection.ts";

interface Entry {
  /** `null`: exclusive; else entries of the same group share the key. */
  readonly group: string | null;
  granted: boolean;
  grant(): void;
}

/** A place in a key's local queue, held until {@linkcode LocalTurn.leave}. */
export interface LocalTurn {
  /** Gives the key to the next in line. Idempotent. */
  leave(): void;
}

/** Per-key FIFO queues of the client's own requests. */
export class LocalQueue {
  readonly #queues = new Map<string, Entry[]>();

  /**
   * Waits for the turn at `key`: alone, or with the holders of the same
   * `group`, when nobody waits before.
   *
   * @param key the key, as the caller gave it
   * @param group `null` for exclusive; a value shares with the same value
   * @param options `deadline` (ms from now; 0: only if free now) and `signal`
   * @returns the turn
   * @throws {DeadlineError} the deadline passed first
   * @throws the signal's reason when aborted first
   */
  enter(
    key: string,
    group: string | null,
    options: { deadline: number; signal?: AbortSignal | undefined },
  ): Promise<LocalTurn> {
    const { deadline, signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let queue = this.#queues.get(key);
    if (queue === undefined) this.#queues.set(key, queue = []);
    const list = queue;
    return new Promise<LocalTurn>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const turn: LocalTurn = { leave: () => this.#leave(key, entry) };
      const entry: Entry = {
        group,
        granted: false,
        grant: () => {
          cleanup();
          resolve(turn);
        },
      };
      const giveUp = (reason: unknown) => {
        if (entry.granted) return;
        cleanup();
        this.#leave(key, entry);
        reject(reason);
      };
      const onAbort = () => giveUp(signal!.reason);
      list.push(entry);
      this.#pump(key);
      if (entry.granted) return;
      if (deadline === 0) return giveUp(new DeadlineError());
      signal?.addEventListener("abort", onAbort, { once: true });
      if (Number.isFinite(deadline)) {
        timer = setTimeout(() => giveUp(new DeadlineError()), Math.min(deadline, 2 ** 31 - 1));
      }
    });
  }

  #leave(key: string, entry: Entry): void {
    const queue = this.#queues.get(key);
    const at = queue?.indexOf(entry) ?? -1;
    if (queue === undefined || at < 0) return;
    queue.splice(at, 1);
    if (queue.length === 0) this.#queues.delete(key);
    else this.#pump(key);
  }

  /** Grants, from the front, what may hold together. */
  #pump(key: string): void {
    const queue = this.#queues.get(key);
    if (queue === undefined) return;
    let holders: string | null | undefined = undefined; // undefined: none yet
    for (const entry of queue) {
      if (entry.granted) {
        holders = entry.group;
        if (holders === null) return;
        continue;
      }
      const fits = holders === undefined || (entry.group !== null && entry.group === holders);
      if (!fits) return;
      entry.granted = true;
      entry.grant();
      holders = entry.group;
      if (holders === null) return;
    }
  }
}
