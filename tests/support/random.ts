/**
 * A seeded random number generator for tests, so that a failing random run
 * can be repeated: the seed comes from `ELOCK_TEST_SEED` when set, and is
 * part of every failure message.
 *
 * @module
 */

import process from "node:process";

/** A seeded generator (mulberry32). */
export interface Random {
  /** The seed, for failure messages. */
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
  /** One of `items`. */
  pick<T>(items: readonly T[]): T;
}

/** A generator seeded with `seed`, else with `ELOCK_TEST_SEED`, else with a fresh seed. */
export function random(seed: number = envSeed() ?? Math.floor(Math.random() * 2 ** 31)): Random {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    seed,
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (items) => items[Math.floor(next() * items.length)]!,
  };
}

/** The seed `ELOCK_TEST_SEED` names, if it names one. */
export function envSeed(): number | undefined {
  const text = process.env.ELOCK_TEST_SEED;
  const seed = Number(text);
  return text !== undefined && text.trim() !== "" && Number.isInteger(seed) ? seed : undefined;
}
