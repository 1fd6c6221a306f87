/**
 * Background probing: every job runs once per interval, independent of scrapes.
 *
 * Jobs added together are spread evenly over one interval (with ±10% of a slot
 * of jitter, so instances started together drift apart), at most one run per
 * job is in flight, and a semaphore bounds how many run at once. A run that
 * starts late — because the event loop was busy or every slot was taken — is
 * reported, so a starved exporter shows up instead of reporting false latency.
 * @module
 */

import { type Clock, deadline, systemClock, type TimerId } from "./clock.ts";
import { Semaphore } from "./semaphore.ts";

/** A unit of background work, e.g. one target's probe. */
export interface Job {
  /** Stable identity: a job with the same key across updates is the same job. */
  readonly key: string;
  /** Runs one probe. The signal aborts at the timeout, on removal and on shutdown. */
  run(signal: AbortSignal): Promise<void>;
}

/** How a scheduler paces its jobs. */
export interface SchedulerOptions {
  intervalMs: number;
  timeoutMs: number;
  concurrency: number;
  /** Called when a run starts more than {@link LATE_START_TOLERANCE_MS} after its slot, or a slot is skipped. */
  onLate?: (key: string, lateByMs: number) => void;
  /** Called when a job's run throws; jobs are expected to record their own failures. */
  onError?: (key: string, error: unknown) => void;
  clock?: Clock;
  /** Uniform random numbers in [0, 1), for the jitter. */
  random?: () => number;
}

/**
 * How late a run may start before it counts as late. Timers in an idle Deno
 * process fire within a few milliseconds; 50 ms of lag already distorts the
 * latency a probe measures on a fast network.
 */
export const LATE_START_TOLERANCE_MS = 50;

/** Jitter applied to each start offset, as a fraction of one slot. */
const JITTER_FRACTION = 0.1;

interface Entry {
  job: Job;
  nextAt: number;
  timer: TimerId | undefined;
  inFlight: Promise<void> | undefined;
  /** Aborts this job's in-flight run when the job is removed. */
  removed: AbortController;
  /** Aborts on removal or shutdown; made once per job, not per run. */
  cancelled: AbortSignal;
}

/**
 * Whether a probe with this deadline ends before its next slot: the rule
 * for every interval and timeout, checked by the flags (pacing) and by the
 * scheduler itself.
 */
export function timeoutFitsInterval(timeoutMs: number, intervalMs: number): boolean {
  return timeoutMs < intervalMs;
}

/** Runs jobs in the background, once per interval each. */
export class Scheduler {
  readonly #options:
    & Required<Omit<SchedulerOptions, "onLate" | "onError">>
    & Pick<SchedulerOptions, "onLate" | "onError">;
  readonly #entries = new Map<string, Entry>();
  readonly #semaphore: Semaphore;
  readonly #shutdown = new AbortController();
  #started = false;
  #lastActivityAt: number;
  /** Jobs that have not completed their first run; readiness waits for them. */
  readonly #awaitingFirstRun = new Set<string>();

  constructor(options: SchedulerOptions) {
    if (!timeoutFitsInterval(options.timeoutMs, options.intervalMs)) {
      throw new RangeError(
        `Cannot schedule: current timeout ${options.timeoutMs} ms is not below the interval ${options.intervalMs} ms`,
      );
    }
    if (!(Number.isInteger(options.concurrency) && options.concurrency > 0)) {
      throw new RangeError(
        `Cannot schedule: current concurrency is ${options.concurrency}, it must be a positive integer`,
      );
    }
    this.#options = { clock: systemClock, random: Math.random, ...options };
    this.#semaphore = new Semaphore(options.concurrency);
    this.#lastActivityAt = this.#options.clock.now();
  }

  /** Number of scheduled jobs. */
  get size(): number {
    return this.#entries.size;
  }

  /** True once every job present at start (and still present) has completed a run. */
  get firstRoundDone(): boolean {
    return this.#started && this.#awaitingFirstRun.size === 0;
  }

  /**
   * True while timers keep firing. With no jobs there is nothing to fire, which
   * is healthy too.
   */
  get alive(): boolean {
    if (this.#shutdown.signal.aborted) return false;
    if (this.#entries.size === 0) return true;
    const quietFor = this.#options.clock.now() - this.#lastActivityAt;
    return quietFor <= 2 * this.#options.intervalMs + this.#options.timeoutMs;
  }

  /**
   * Makes the scheduled jobs equal to `jobs`: new keys are added (spread over
   * one interval from now), missing keys are removed (their in-flight run is
   * aborted), kept keys keep their cadence and take the new job object.
   */
  update(jobs: Iterable<Job>): void {
    const wanted = new Map<string, Job>();
    for (const job of jobs) wanted.set(job.key, job);
    for (const [key, entry] of this.#entries) {
      if (!wanted.has(key)) this.#remove(key, entry);
    }
    const added: Job[] = [];
    for (const [key, job] of wanted) {
      const entry = this.#entries.get(key);
      if (entry) entry.job = job;
      else added.push(job);
    }
    const { clock, intervalMs, random } = this.#options;
    const slot = intervalMs / Math.max(added.length, 1);
    const now = clock.now();
    added.forEach((job, index) => {
      // Slot centres sit one jitter-width in, so ±jitter never leaves [0, interval).
      const jitter = (random() * 2 - 1) * JITTER_FRACTION * slot;
      const offset = (index + JITTER_FRACTION) * slot + jitter;
      const removed = new AbortController();
      const entry: Entry = {
        job,
        nextAt: now + offset,
        timer: undefined,
        inFlight: undefined,
        removed,
        cancelled: AbortSignal.any([removed.signal, this.#shutdown.signal]),
      };
      this.#entries.set(job.key, entry);
      if (!this.#started) this.#awaitingFirstRun.add(job.key);
      if (this.#started) this.#arm(entry);
    });
  }

  /** Starts the timers. Jobs added later start as they are added. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#lastActivityAt = this.#options.clock.now();
    for (const entry of this.#entries.values()) this.#arm(entry);
  }

  /** Stops all timers, aborts in-flight runs and waits for them to settle. */
  async stop(): Promise<void> {
    this.#shutdown.abort(new DOMException("Scheduler stopped", "AbortError"));
    const inFlight: Promise<void>[] = [];
    for (const entry of this.#entries.values()) {
      if (entry.timer !== undefined) this.#options.clock.clearTimeout(entry.timer);
      entry.timer = undefined;
      if (entry.inFlight) inFlight.push(entry.inFlight);
    }
    await Promise.allSettled(inFlight);
  }

  #remove(key: string, entry: Entry): void {
    if (entry.timer !== undefined) this.#options.clock.clearTimeout(entry.timer);
    entry.removed.abort(new DOMException(`Job ${key} removed`, "AbortError"));
    this.#entries.delete(key);
    this.#awaitingFirstRun.delete(key);
  }

  #arm(entry: Entry): void {
    if (this.#shutdown.signal.aborted) return;
    const { clock } = this.#options;
    entry.timer = clock.setTimeout(
      () => this.#fire(entry),
      Math.max(entry.nextAt - clock.now(), 0),
    );
  }

  #fire(entry: Entry): void {
    const { clock, intervalMs, onLate } = this.#options;
    entry.timer = undefined;
    const slotAt = entry.nextAt;
    const now = clock.now();
    this.#lastActivityAt = now;
    // Keep the cadence anchored to the first slot; if the loop was blocked
    // for more than an interval, skip the missed slots rather than bunching.
    entry.nextAt = slotAt + intervalMs * Math.max(1, Math.ceil((now - slotAt) / intervalMs));
    if (entry.inFlight) {
      onLate?.(entry.job.key, now - slotAt);
    } else {
      entry.inFlight = this.#runOnce(entry, slotAt).finally(() => {
        entry.inFlight = undefined;
      });
    }
    this.#arm(entry);
  }

  async #runOnce(entry: Entry, slotAt: number): Promise<void> {
    const { clock, timeoutMs, onLate, onError } = this.#options;
    try {
      await this.#semaphore.acquire(entry.cancelled);
    } catch {
      return; // removed or shut down while queued
    }
    try {
      const lateBy = clock.now() - slotAt;
      if (lateBy > LATE_START_TOLERANCE_MS) onLate?.(entry.job.key, lateBy);
      using limit = deadline(timeoutMs, entry.cancelled, clock);
      await entry.job.run(limit.signal);
    } catch (error) {
      onError?.(entry.job.key, error);
    } finally {
      this.#semaphore.release();
      this.#awaitingFirstRun.delete(entry.job.key);
    }
  }
}
