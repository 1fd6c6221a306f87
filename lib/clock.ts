/**
 * Time as a dependency: the scheduler and the probes read time and set timers
 * only through a {@link Clock}, so tests can drive them with fake time.
 * @module
 */

/** Whatever a clock's `setTimeout` returns; only its `clearTimeout` reads it. */
export type TimerId = unknown;

/** Monotonic milliseconds and timers. */
export interface Clock {
  /** Monotonic time in milliseconds (never jumps with the wall clock). */
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerId;
  clearTimeout(id: TimerId): void;
}

/** The process's own monotonic clock and timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (id) => clearTimeout(id as number),
};

/** A deadline: its signal aborts when the time is up or when the outer signal aborts. */
export interface Deadline extends Disposable {
  readonly signal: AbortSignal;
  /** True once the signal has aborted because the time ran out (not because of the outer signal). */
  readonly expired: boolean;
}

/**
 * The one place deadlines are made: a signal that aborts with a `TimeoutError`
 * after `ms`, or with the outer signal's reason. Dispose it to clear the timer.
 */
export function deadline(ms: number, outer: AbortSignal, clock: Clock = systemClock): Deadline {
  const timer = new AbortController();
  const id = clock.setTimeout(
    () => timer.abort(new DOMException(`Deadline of ${ms} ms exceeded`, "TimeoutError")),
    ms,
  );
  return {
    signal: AbortSignal.any([timer.signal, outer]),
    get expired() {
      return timer.signal.aborted;
    },
    [Symbol.dispose]() {
      clock.clearTimeout(id);
    },
  };
}
