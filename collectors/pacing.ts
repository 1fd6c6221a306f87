/**
 * The flags every probe collector has, defined once: how often, how long,
 * how many at once, and the latency histogram's buckets — and the check that
 * a timeout stays below its interval.
 * @module
 */

import { formatDuration } from "../lib/duration.ts";
import { timeoutFitsInterval } from "../lib/scheduler.ts";
import {
  bucketsFlag,
  durationFlag,
  type Flag,
  FlagError,
  type FlagValues,
  integerFlag,
} from "../lib/flags.ts";
import type { Pacing } from "./collector.ts";

/**
 * Latency buckets from 0.5 ms to 8 s on a 1-2.5-5 scale, so thresholds people
 * alert on (10 ms, 100 ms, 250 ms, 500 ms, 1 s) are bucket edges, and TCP's
 * SYN retransmits (≈1 s, ≈3 s) land in buckets of their own.
 */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  8,
];

/** A collector's pacing with its histogram's buckets. */
export interface ProbePacing extends Pacing {
  readonly buckets: readonly number[];
}

/** What a collector's pacing flags read as. */
export interface PacingFlags {
  readonly flags: readonly Flag<unknown>[];
  /** Reads and checks the flags (timeout below interval); throws a {@link FlagError}. */
  read(values: FlagValues): ProbePacing;
}

/** The pacing flags of collector `name`, e.g. --dns.interval, --dns.timeout. */
export function pacingFlags(
  name: string,
  defaults: {
    readonly what: string;
    readonly interval: string;
    readonly timeout: string;
    readonly concurrency: number;
    readonly histogram: string;
    /** The histogram's default buckets; {@link DEFAULT_BUCKETS} unless given. */
    readonly buckets?: readonly number[];
  },
): PacingFlags {
  const interval = durationFlag(
    `${name}.interval`,
    `How often each ${defaults.what} runs`,
    defaults.interval,
  );
  const timeout = durationFlag(
    `${name}.timeout`,
    `Deadline of one ${defaults.what}; must be below --${name}.interval`,
    defaults.timeout,
  );
  const concurrency = integerFlag(
    `${name}.concurrency`,
    `${defaults.what[0]!.toUpperCase()}${defaults.what.slice(1)}s in flight at most`,
    defaults.concurrency,
  );
  const buckets = bucketsFlag(
    `${name}.buckets`,
    `Upper bounds of ${defaults.histogram} buckets`,
    defaults.buckets ?? DEFAULT_BUCKETS,
  );
  return {
    flags: [interval, timeout, concurrency, buckets],
    read(values) {
      const pacing = {
        intervalMs: interval.read(values),
        timeoutMs: timeout.read(values),
        concurrency: concurrency.read(values),
        buckets: buckets.read(values),
      };
      if (!timeoutFitsInterval(pacing.timeoutMs, pacing.intervalMs)) {
        throw new FlagError(
          `Cannot schedule ${defaults.what}s: current --${name}.timeout=${
            formatDuration(pacing.timeoutMs)
          } is not below --${name}.interval=${formatDuration(pacing.intervalMs)}`,
        );
      }
      return pacing;
    },
  };
}
