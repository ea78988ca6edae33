/**
 * Medians and percentiles of latency samples, and a growable sample buffer.
 *
 * @module
 */

/** Latency samples in ms, appended without per-sample allocation. */
export class Samples {
  #data = new Float64Array(4096);
  #length = 0;

  /** Number of samples. */
  get length(): number {
    return this.#length;
  }

  /** Appends one sample. */
  add(ms: number): void {
    if (this.#length === this.#data.length) {
      const bigger = new Float64Array(this.#data.length * 2);
      bigger.set(this.#data);
      this.#data = bigger;
    }
    this.#data[this.#length++] = ms;
  }

  /** The samples, sorted ascending (a copy). */
  sorted(): Float64Array {
    return this.#data.slice(0, this.#length).sort();
  }

  /** The p-th percentile (0-100, nearest rank), or NaN without samples. */
  percentile(p: number): number {
    return percentileOf(this.sorted(), p);
  }
}

/** The p-th percentile (nearest rank) of ascending `sorted`, or NaN when empty. */
export function percentileOf(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** The median of `values`, or NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Rounds to `digits` significant digits, for printing and JSON. */
export function round(value: number, digits = 4): number {
  if (!Number.isFinite(value) || value === 0) return value;
  return Number(value.toPrecision(digits));
}
