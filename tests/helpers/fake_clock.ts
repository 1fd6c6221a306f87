/**
 * A {@link Clock} on @sinonjs/fake-timers, with a knob to make the event loop
 * look busy (timers then appear to fire late).
 * @module
 */

import FakeTimers from "@sinonjs/fake-timers";
import type { Clock } from "../../lib/clock.ts";

/** A fake clock for the scheduler, advanced by the test. */
export interface FakeClock extends Clock {
  /** Advances time, running due timers and the promise jobs between them. */
  tick(ms: number): Promise<void>;
  /** Extra milliseconds `now()` reports, as if the loop had been blocked that long. */
  lag: number;
}

/** Creates a fake clock starting at 0 ms. */
export function createFakeClock(): FakeClock {
  const fake = FakeTimers.createClock(0);
  const clock: FakeClock = {
    lag: 0,
    now: () => fake.now + clock.lag,
    setTimeout: (callback, ms) => fake.setTimeout(callback, ms),
    clearTimeout: (id) => fake.clearTimeout(id as ReturnType<typeof fake.setTimeout>),
    async tick(ms) {
      await fake.tickAsync(ms);
    },
  };
  return clock;
}

/** A seeded pseudo-random generator (mulberry32), so jitter is reproducible. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
