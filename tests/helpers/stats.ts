/**
 * The one definition of a quantile and a median that the simulation, the
 * comparison and the benchmarks share, so their figures mean the same thing.
 * @module
 */

/**
 * Nearest-rank quantile (q from 0 to 1): the smallest value with at least
 * q of the values at or below it. NaN for no values.
 */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** The 0.5 quantile, nearest rank (of an even count, the lower middle value). NaN for no values. */
export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}
