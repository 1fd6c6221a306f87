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

/** Steps within a decade: each at most ×1.43 over the one before. */
const DECADE_STEPS = [1, 1.4, 2, 2.8, 4, 5.6, 8] as const;

/**
 * Latency buckets from 40 µs to 8 s, seven to a decade (1, 1.4, 2, 2.8, 4,
 * 5.6, 8): a pod-to-pod handshake in a cluster takes 0.05–0.5 ms, and the
 * old default's first bucket (0.5 ms) held all of them, so `histogram_quantile`
 * read 2–4× the truth there. With neighbouring bounds at most 1.43× apart, a
 * median interpolated inside a bucket is off by at most about +21% / −15%
 * for a narrow distribution, anywhere in the range; 100 ms and 1 s stay
 * bucket edges. The cost is 38 buckets (39 series with +Inf) per target,
 * where the old default had 14; native histograms (protobuf scrapes) give
 * finer buckets at less cost.
 */
export const DEFAULT_BUCKETS: readonly number[] = [-5, -4, -3, -2, -1, 0].flatMap((exponent) =>
  DECADE_STEPS.map((step) => Number((step * 10 ** exponent).toPrecision(2)))
).filter((bound) => bound >= 0.00004);

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
