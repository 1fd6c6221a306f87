/**
 * Go-style durations ("500ms", "15s", "1m30s"), the notation Prometheus users
 * already type for scrape intervals and timeouts.
 * @module
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * The longest duration accepted: timers hold at most 2³¹−1 ms (about 24.8
 * days) and fire at once beyond it, which would turn an interval into a storm.
 */
export const MAX_DURATION_MS = 576 * 3_600_000;

/** The shortest duration accepted: timers do not resolve finer than 1 ms. */
export const MIN_DURATION_MS = 1;

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/**
 * Parses a Go-style duration into milliseconds.
 * @throws {RangeError} when the text is not a duration from 1ms to 576h.
 */
export function parseDuration(text: string): number {
  if (text === "") throw new RangeError("Cannot parse duration: current value is empty");
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const at = PART.lastIndex;
    const match = PART.exec(text);
    if (match === null) {
      throw new RangeError(
        `Cannot parse duration: current value is "${text}" (expected e.g. 500ms, 15s, 1m; unexpected "${
          text.slice(at)
        }")`,
      );
    }
    total += Number(match[1]) * UNIT_MS[match[2] as string]!;
  }
  if (!(total > 0)) {
    throw new RangeError(`Cannot use duration: current value is "${text}", it must be above zero`);
  }
  if (total < MIN_DURATION_MS || total > MAX_DURATION_MS) {
    throw new RangeError(
      `Cannot use duration: current value is "${text}", it must be from ${
        formatDuration(MIN_DURATION_MS)
      } to ${formatDuration(MAX_DURATION_MS)}`,
    );
  }
  return total;
}

/** Formats milliseconds the way {@link parseDuration} reads them, e.g. 1500 → "1.5s". */
export function formatDuration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1_000) return `${+(ms / 1_000).toFixed(3)}s`;
  return `${+ms.toFixed(3)}ms`;
}
