/**
 * What every collector shares: a set of targets probed in the background by a
 * {@link Scheduler}, a latency histogram for successes, an error counter by
 * reason for failures, and the last result of each target for the status page.
 *
 * The probes themselves never touch metrics; this is the one place that does.
 * @module
 */

import type { Logger } from "@logtape/logtape";
import * as client from "../lib/prom_client.ts";
import { Histogram, type NativeHistogramOptions } from "../lib/histogram.ts";
import { type Clock, deadline, systemClock } from "../lib/clock.ts";
import { Scheduler } from "../lib/scheduler.ts";
import { Semaphore } from "../lib/semaphore.ts";
import { type PastProbe, TargetHistory } from "./history.ts";
import { errorMessage, rethrowIfCancelled } from "./probe_signal.ts";

/** What a probe reports, stripped to what the collector records. */
export type ProbeOutcome =
  | {
    readonly ok: true;
    readonly seconds: number;
    /**
     * Further figures of a success, by name: those in {@link ProbeMetricsSpec.readings} are
     * exported as gauges, the rest only shown (status page, `check`).
     */
    readonly readings?: Readonly<Record<string, number>>;
    /** Events seen by the probe, added to the counters of {@link ProbeMetricsSpec.counters}. */
    readonly counts?: Readonly<Record<string, number>>;
    /**
     * Several timings of one probe (an echo round's datagrams): each goes into the latency
     * histogram instead of `seconds`, which stays the probe's figure for the status page.
     */
    readonly observations?: readonly number[];
  }
  | {
    readonly ok: false;
    readonly reason: string;
    readonly message: string;
    readonly counts?: Readonly<Record<string, number>>;
    /** Timings a failed probe still made (the small echoes of a round whose full-size one was lost). */
    readonly observations?: readonly number[];
    /** Figures of a failure, for the readings that are kept while a target fails. */
    readonly readings?: Readonly<Record<string, number>>;
  };

/** One thing to probe. Two targets with the same key are the same target. */
export interface ProbeTarget {
  readonly key: string;
  /** How a person names it, e.g. "example.org. A via 10.0.0.10:53/udp" or "10.0.0.5:8000 (node-b)". */
  readonly title: string;
  /** Label values of the target's series (without `reason`). */
  readonly labels: Readonly<Record<string, string>>;
  /** Runs the probe; throws only when cancelled or on a bug. */
  probe(signal: AbortSignal): Promise<ProbeOutcome>;
}

/** The last known state of a target, for the status page and `check`. */
export interface TargetStatus {
  readonly collector: string;
  readonly title: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly state: "pending" | "up" | "down";
  readonly seconds?: number;
  /**
   * Further figures of the last success, e.g. an NTP server's clock offset;
   * a name ending in "Seconds" is a duration.
   */
  readonly readings?: Readonly<Record<string, number>>;
  readonly reason?: string;
  readonly message?: string;
  /** Wall-clock time of the last result, in ms since the epoch. */
  readonly at?: number;
  /** When the state last changed between up and down, ms since the epoch. */
  readonly since?: number;
  /** The last probes, oldest first (at most 30: see history.ts). */
  readonly history?: readonly PastProbe[];
  /** Failures since the target appeared, by reason. */
  readonly failures?: Readonly<Record<string, number>>;
}

/** A collector as the rest of the exporter sees it. */
export interface Collector {
  readonly name: string;
  /** Starts background probing. */
  start(): void;
  /** Stops probing and waits for in-flight probes. */
  stop(): Promise<void>;
  /**
   * Runs the probe path against loopback stand-ins, untimed, so that a fresh
   * process's first probes are not timed while the runtime still loads and
   * compiles it (for `check`). Probes no target.
   */
  warmUp(signal: AbortSignal): Promise<void>;
  /** Probes every target once, now, and returns their states (for `check`). */
  probeAll(signal: AbortSignal): Promise<TargetStatus[]>;
  /** Last known state of every target. */
  statuses(): TargetStatus[];
  /** True once every target has been probed once. */
  readonly ready: boolean;
  /** True while the scheduler keeps firing. */
  readonly alive: boolean;
}

/** The metrics every collector shares, in the exporter's registry. */
export interface SharedMetrics {
  readonly registry: client.Registry;
  /** Targets per collector. */
  readonly targets: client.Gauge<"collector">;
  /** Probes that started late or skipped a slot, per collector. */
  readonly probesLate: client.Counter<"collector">;
  /** Native buckets of the latency histograms; classic buckets only when absent. */
  readonly nativeHistograms?: NativeHistogramOptions;
}

/** Everything a collector needs from the exporter around it. */
export interface CollectorContext {
  readonly metrics: SharedMetrics;
  readonly logger: Logger;
  /**
   * A target going down or coming back is logged at warning and info; with
   * `"debug"`, at debug only (`check`, whose output says it already).
   */
  readonly targetChanges?: "logged" | "debug";
  /**
   * The address `serve` answers HTTP on, once bound (a collector that answers its peers, as the
   * echo collector does, takes the same host and port); undefined in `check`.
   */
  readonly listen?: () => { readonly hostname: string; readonly port: number } | undefined;
  /** Peers come from Kubernetes discovery: only they are peers (the echo collector answers them only). */
  readonly peersFromDiscovery?: boolean;
  readonly clock?: Clock;
  readonly random?: () => number;
}

/** Pacing shared by all of a collector's targets. */
export interface Pacing {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly concurrency: number;
}

/** The metrics a probe collector records into. */
export interface ProbeMetrics {
  readonly latency: Histogram;
  /**
   * The exact time of each target's last probe while it succeeds (the
   * histogram only knows its bucket); removed when a probe fails, so a
   * "latency now" panel shows no figure for a target that is down.
   */
  readonly lastLatency: client.Gauge<string>;
  /** 1 when a target's last probe succeeded, 0 when it failed; absent until its first probe. */
  readonly success: client.Gauge<string>;
  readonly errors: client.Counter<string>;
  /** Failures of the exporter itself (a probe that threw), not of the network. */
  readonly internalErrors: client.Counter<string>;
  /** Every `reason` label value, so each target's error series exist at 0 from the start. */
  readonly reasons: readonly string[];
  /**
   * A gauge per further figure of a success, by reading name; set from each
   * success and, like `lastLatency`, removed while the target fails.
   */
  readonly readings: Readonly<Record<string, client.Gauge<string>>>;
  /** A counter per kind of event a probe counts (success or not), by count name. */
  readonly counters: Readonly<Record<string, client.Counter<string>>>;
  /** Labels a count adds to the target's on its counter (e.g. `size="full"`), by count name. */
  readonly counterLabels: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** Readings kept while a target fails, and set at 0 when it appears. */
  readonly keptReadings: ReadonlySet<string>;
}

/** The generic collector: owns metrics and state for a changing set of targets. */
export class ProbeCollector implements Collector {
  readonly name: string;
  readonly #metrics: ProbeMetrics;
  readonly #context: CollectorContext;
  readonly #pacing: Pacing;
  readonly #scheduler: Scheduler;
  readonly #targets = new Map<string, ProbeTarget>();
  readonly #status = new Map<string, TargetStatus>();
  readonly #history = new Map<string, TargetHistory>();

  readonly #warmUp: (signal: AbortSignal) => Promise<void>;
  #prepared = false;

  /** `warmUp` exercises the probe path without probing a target (see {@link Collector.warmUp}). */
  constructor(
    name: string,
    metrics: ProbeMetrics,
    pacing: Pacing,
    context: CollectorContext,
    warmUp: (signal: AbortSignal) => Promise<void> = () => Promise.resolve(),
  ) {
    this.name = name;
    this.#warmUp = warmUp;
    this.#metrics = metrics;
    this.#context = context;
    this.#pacing = pacing;
    this.#scheduler = new Scheduler({
      ...pacing,
      clock: context.clock ?? systemClock,
      random: context.random ?? Math.random,
      onLate: () => context.metrics.probesLate.inc({ collector: name }),
      onError: (key, error) => this.#internalError(key, error),
    });
    context.metrics.probesLate.inc({ collector: name }, 0);
    context.metrics.targets.set({ collector: name }, 0);
  }

  get ready(): boolean {
    return this.#scheduler.firstRoundDone;
  }

  get alive(): boolean {
    return this.#scheduler.alive;
  }

  /**
   * Makes the probed set equal to `targets`. A target that leaves takes all
   * its series with it; a new one starts with every error series at 0, so
   * `increase()` sees its first error.
   */
  setTargets(targets: Iterable<ProbeTarget>): void {
    const wanted = new Map<string, ProbeTarget>();
    for (const target of targets) wanted.set(target.key, target);
    for (const [key, target] of this.#targets) {
      if (!wanted.has(key)) this.#forget(key, target);
    }
    for (const [key, target] of wanted) {
      if (!this.#targets.has(key)) {
        for (const reason of this.#metrics.reasons) {
          this.#metrics.errors.inc({ ...target.labels, reason }, 0);
        }
        for (const [name, counter] of Object.entries(this.#metrics.counters)) {
          counter.inc({ ...target.labels, ...this.#metrics.counterLabels[name] }, 0);
        }
        for (const name of this.#metrics.keptReadings) {
          this.#metrics.readings[name]?.set(target.labels, 0);
        }
        this.#history.set(key, new TargetHistory());
        this.#status.set(key, {
          collector: this.name,
          title: target.title,
          labels: target.labels,
          state: "pending",
        });
      }
      this.#targets.set(key, target);
    }
    this.#scheduler.update(
      [...wanted.values()].map((target) => ({
        key: target.key,
        run: (signal: AbortSignal) => this.#probeAndRecord(target, signal),
      })),
    );
    this.#context.metrics.targets.set({ collector: this.name }, this.#targets.size);
  }

  start(): void {
    this.#prepareOnce();
    this.#scheduler.start();
  }

  stop(): Promise<void> {
    return this.#scheduler.stop();
  }

  warmUp(signal: AbortSignal): Promise<void> {
    this.#prepareOnce();
    return this.#warmUp(signal);
  }

  /**
   * Opens what probing needs beyond the collector itself (libc, a dialer), once, before the
   * first `start()` or `warmUp()`: not at construction, so that a run that ends before probing
   * starts (a flag error, a listen address in use) has opened nothing. Nothing by default.
   */
  protected prepare(): void {}

  #prepareOnce(): void {
    if (this.#prepared) return;
    this.#prepared = true;
    this.prepare();
  }

  async probeAll(signal: AbortSignal): Promise<TargetStatus[]> {
    const semaphore = new Semaphore(this.#pacing.concurrency);
    await Promise.all([...this.#targets.values()].map(async (target) => {
      await semaphore.acquire(signal);
      try {
        using limit = deadline(this.#pacing.timeoutMs, signal, this.#context.clock);
        await this.#probeAndRecord(target, limit.signal);
      } catch (error) {
        this.#internalError(target.key, error);
      } finally {
        semaphore.release();
      }
    }));
    return this.statuses();
  }

  statuses(): TargetStatus[] {
    return [...this.#status.entries()].map(([key, status]) => {
      const history = this.#history.get(key);
      if (!history) return status;
      return {
        ...status,
        ...(history.since === undefined ? {} : { since: history.since }),
        history: history.probes(),
        failures: history.failures(),
      };
    });
  }

  /** Counts a failure of a part that feeds this collector (e.g. discovery) as an internal error. */
  countInternalError(): void {
    this.#metrics.internalErrors.inc();
  }

  #forget(key: string, target: ProbeTarget): void {
    this.#targets.delete(key);
    this.#status.delete(key);
    this.#history.delete(key);
    this.#metrics.latency.remove(target.labels);
    this.#metrics.lastLatency.remove(target.labels);
    this.#metrics.success.remove(target.labels);
    for (const gauge of Object.values(this.#metrics.readings)) gauge.remove(target.labels);
    for (const [name, counter] of Object.entries(this.#metrics.counters)) {
      counter.remove({ ...target.labels, ...this.#metrics.counterLabels[name] });
    }
    for (const reason of this.#metrics.reasons) {
      this.#metrics.errors.remove({ ...target.labels, reason });
    }
  }

  async #probeAndRecord(target: ProbeTarget, signal: AbortSignal): Promise<void> {
    let outcome: ProbeOutcome;
    try {
      outcome = await target.probe(signal);
    } catch (error) {
      rethrowIfCancelled(signal);
      throw error;
    }
    // Removed while in flight: its series are gone and must stay gone.
    if (!this.#targets.has(target.key)) return;
    const previous = this.#status.get(target.key);
    const at = Date.now();
    this.#history.get(target.key)?.record(at, outcome);
    for (const [name, counter] of Object.entries(this.#metrics.counters)) {
      const count = outcome.counts?.[name];
      if (count !== undefined && count > 0) {
        counter.inc({ ...target.labels, ...this.#metrics.counterLabels[name] }, count);
      }
    }
    for (const value of outcome.observations ?? []) {
      this.#metrics.latency.observe(target.labels, value);
    }
    let status: TargetStatus;
    if (outcome.ok) {
      if (!outcome.observations) this.#metrics.latency.observe(target.labels, outcome.seconds);
      this.#metrics.lastLatency.set(target.labels, outcome.seconds);
      this.#metrics.success.set(target.labels, 1);
      for (const [name, gauge] of Object.entries(this.#metrics.readings)) {
        const value = outcome.readings?.[name];
        if (value === undefined) gauge.remove(target.labels);
        else gauge.set(target.labels, value);
      }
      status = {
        collector: this.name,
        title: target.title,
        labels: target.labels,
        state: "up",
        seconds: outcome.seconds,
        ...(outcome.readings ? { readings: outcome.readings } : {}),
        at,
      };
    } else {
      this.#metrics.errors.inc({ ...target.labels, reason: outcome.reason });
      this.#metrics.lastLatency.remove(target.labels);
      for (const [name, gauge] of Object.entries(this.#metrics.readings)) {
        if (!this.#metrics.keptReadings.has(name)) gauge.remove(target.labels);
        else if (outcome.readings?.[name] !== undefined) {
          gauge.set(target.labels, outcome.readings[name]);
        }
      }
      this.#metrics.success.set(target.labels, 0);
      status = {
        collector: this.name,
        title: target.title,
        labels: target.labels,
        state: "down",
        reason: outcome.reason,
        message: outcome.message,
        at,
      };
    }
    this.#status.set(target.key, status);
    this.#logTransition(previous, status);
  }

  #logTransition(previous: TargetStatus | undefined, current: TargetStatus): void {
    const { logger } = this.#context;
    const before = previous?.state ?? "pending";
    if (before === current.state && previous?.reason === current.reason) return;
    const properties = { collector: this.name, ...current.labels };
    const target = current.title;
    if (this.#context.targetChanges === "debug") {
      logger.debug(`${this.name} target ${current.state}: ${target}`, {
        ...properties,
        ...(current.reason ? { reason: current.reason, error: current.message } : {}),
      });
      return;
    }
    if (current.state === "up") {
      const message = `${this.name} target up: ${target}`;
      if (before === "pending") logger.debug(message, properties);
      else logger.info(message, { ...properties, seconds: current.seconds });
    } else {
      logger.warn(`${this.name} target down: ${target} (${current.reason})`, {
        ...properties,
        reason: current.reason,
        error: current.message,
      });
    }
  }

  #internalError(key: string, error: unknown): void {
    if (error instanceof DOMException && error.name === "AbortError") return;
    this.#metrics.internalErrors.inc();
    this.#context.logger.error(`${this.name} probe of ${key} failed inside the exporter`, {
      collector: this.name,
      target: key,
      error: errorMessage(error),
    });
  }
}

/** How a collector names and explains its probe metrics. */
export interface ProbeMetricsSpec {
  /** Metric name prefix, e.g. "dns" → dns_latency_seconds. */
  readonly prefix: string;
  readonly labelNames: readonly string[];
  readonly buckets: readonly number[];
  /** What is timed, for help texts, e.g. "DNS lookups, from query sent to answer received". */
  readonly measured: string;
  /** The failure counter: its name (kept from the original exporter), help and reasons. */
  readonly errors: {
    readonly name: string;
    readonly help: string;
    readonly reasons: readonly string[];
  };
  /** Help of `<prefix>_error_total`. */
  readonly internalHelp: string;
  /** The latency histogram's name and help (default `<prefix>_latency_seconds`, "Time of …"). */
  readonly latency?: { readonly name: string; readonly help: string };
  /**
   * Further figures of a success: reading name → its gauge's name and help. A `kept` reading
   * exists at 0 from the moment its target does and stays while the target fails (updated
   * from the failure's readings where it has them), as a size tried; the others are removed.
   */
  readonly readings?: Readonly<
    Record<string, { readonly name: string; readonly help: string; readonly kept?: boolean }>
  >;
  /**
   * Events a probe counts: count name → its counter's name and help. Counts may share a
   * counter, told apart by fixed `labels` of their own (e.g. `{ size: "full" }`).
   */
  readonly counters?: Readonly<
    Record<string, {
      readonly name: string;
      readonly help: string;
      readonly labels?: Readonly<Record<string, string>>;
    }>
  >;
}

/**
 * Builds a probe collector's metrics in the shared registry: the same five for
 * every collector, and its readings and counters.
 */
export function createProbeMetrics(
  shared: Pick<SharedMetrics, "registry" | "nativeHistograms">,
  spec: ProbeMetricsSpec,
): ProbeMetrics {
  const registers = [shared.registry];
  const labelNames = [...spec.labelNames];
  return {
    latency: new Histogram({
      name: spec.latency?.name ?? `${spec.prefix}_latency_seconds`,
      help: spec.latency?.help ?? `Time of successful ${spec.measured}.`,
      labelNames,
      buckets: [...spec.buckets],
      ...(shared.nativeHistograms ? { native: shared.nativeHistograms } : {}),
      registers,
    }),
    lastLatency: new client.Gauge({
      name: `${spec.prefix}_last_latency_seconds`,
      help: `Time of the last of the ${spec.measured}, while they succeed; absent while the ` +
        "last one failed.",
      labelNames,
      registers,
    }),
    success: new client.Gauge({
      name: `${spec.prefix}_probe_success`,
      help: `1 if the last of the ${spec.measured} succeeded, 0 if it failed.`,
      labelNames,
      registers,
    }),
    errors: new client.Counter({
      name: spec.errors.name,
      help: spec.errors.help,
      labelNames: [...labelNames, "reason"],
      registers,
    }),
    internalErrors: new client.Counter({
      name: `${spec.prefix}_error_total`,
      help: spec.internalHelp,
      registers,
    }),
    reasons: spec.errors.reasons,
    readings: Object.fromEntries(
      Object.entries(spec.readings ?? {}).map(([reading, { name, help }]) => [
        reading,
        new client.Gauge({ name, help, labelNames, registers }),
      ]),
    ),
    counters: countersOf(spec, labelNames, registers),
    counterLabels: Object.fromEntries(
      Object.entries(spec.counters ?? {}).map(([count, { labels }]) => [count, labels ?? {}]),
    ),
    keptReadings: new Set(
      Object.entries(spec.readings ?? {}).filter(([, { kept }]) => kept).map(([name]) => name),
    ),
  };
}

/** One counter per name, with the label names of every count that uses it. */
function countersOf(
  spec: ProbeMetricsSpec,
  labelNames: string[],
  registers: client.Registry[],
): Record<string, client.Counter<string>> {
  const byName = new Map<string, client.Counter<string>>();
  const entries = Object.entries(spec.counters ?? {});
  return Object.fromEntries(entries.map(([count, { name, help }]) => {
    let counter = byName.get(name);
    if (!counter) {
      const extra = new Set(
        entries.filter(([, other]) => other.name === name).flatMap(([, other]) =>
          Object.keys(other.labels ?? {})
        ),
      );
      counter = new client.Counter({
        name,
        help,
        labelNames: [...labelNames, ...extra],
        registers,
      });
      byName.set(name, counter);
    }
    return [count, counter];
  }));
}
