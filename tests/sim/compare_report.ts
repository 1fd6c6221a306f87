/**
 * The comparison's figures: each tool's typed row, the head-to-head
 * statistics (bootstrap intervals), and the report as Markdown.
 * @module
 */

import { median, quantile } from "../helpers/stats.ts";
import type { Fleet } from "./fleet.ts";

const BOOTSTRAP_ROUNDS = 1_000;

export const round = (value: number | undefined | null, digits = 3) =>
  value === undefined || value === null || Number.isNaN(value)
    ? null
    : Math.round(value * 10 ** digits) / 10 ** digits;
/** The median, or undefined where there is nothing to take it of (a row then shows none). */
export const medianOf = (values: readonly number[]) =>
  values.length === 0 ? undefined : median(values);

/** The faults whose detection is timed; row keys start with these. */
export const FAULTS = ["cut", "dns_silent", "dns_servfail"] as const;
export type Fault = typeof FAULTS[number];
export const FAULT_NAMES: Record<Fault, string> = {
  cut: "cut node",
  dns_silent: "DNS server silent",
  dns_servfail: "DNS SERVFAIL",
};

/** A figure on which every tool's raw values are compared with the first tool's. */
export interface Contest {
  readonly figure: string;
  readonly statistic: "median" | "p99" | "mean";
  /** Milliseconds; undefined for a tool whose probes are not known one by one. */
  readonly values: Map<Fleet, readonly number[] | undefined>;
}

/** Median and p99 contests of one load window, filled in tool by tool. */
export function loadContests(figure: string): Contest[] {
  return (["median", "p99"] as const).map((statistic) => ({
    figure,
    statistic,
    values: new Map(),
  }));
}

export const STATISTICS = {
  median: (values: readonly number[]) => median(values),
  p99: (values: readonly number[]) => quantile(values, 0.99),
  mean: (values: readonly number[]) =>
    values.reduce((sum, value) => sum + value, 0) / values.length,
};

/** Uniform resample with replacement. */
function resample(values: readonly number[]): number[] {
  return Array.from(
    { length: values.length },
    () => values[Math.floor(Math.random() * values.length)]!,
  );
}

/** The 95% bootstrap interval of statistic(a) − statistic(b), both resampled each round. */
function bootstrapInterval(
  a: readonly number[],
  b: readonly number[],
  statistic: (values: readonly number[]) => number,
): [number, number] {
  const differences = Array.from(
    { length: BOOTSTRAP_ROUNDS },
    () => statistic(resample(a)) - statistic(resample(b)),
  );
  return [quantile(differences, 0.025), quantile(differences, 0.975)];
}

/**
 * Each other tool against the first on every contest: the difference of the
 * statistic (other − first, ms; positive means the first tool is lower, i.e.
 * closer or faster), its 95% bootstrap interval, and what that allows saying.
 */
export function headToHead(fleets: readonly Fleet[], contests: readonly Contest[]) {
  const [first, ...others] = fleets as [Fleet, ...Fleet[]];
  return contests.map((contest) => {
    const statistic = STATISTICS[contest.statistic];
    const mine = contest.values.get(first);
    const row: Record<string, unknown> = { figure: contest.figure, statistic: contest.statistic };
    for (const other of others) {
      const theirs = contest.values.get(other);
      if (!mine?.length || !theirs?.length) {
        row[other.tool.name] = null;
        continue;
      }
      const [low, high] = bootstrapInterval(theirs, mine, statistic);
      row[other.tool.name] = {
        difference_ms: round(statistic(theirs) - statistic(mine), 2),
        interval_ms: [round(low, 2), round(high, 2)],
        verdict: low > 0
          ? `${first.tool.name} lower`
          : high < 0
          ? `${other.tool.name} lower`
          : "no difference beyond chance",
      };
    }
    return row;
  });
}

/**
 * The 95% bootstrap interval of p99(tool) − p99(reference), as "[low, high]"
 * in ms: how far that difference could move by chance alone, with this many
 * samples on each side.
 */
export function p99ErrorInterval(tool: readonly number[], reference: readonly number[]): string {
  const [low, high] = bootstrapInterval(tool, reference, STATISTICS.p99);
  return `[${round(low, 2)}, ${round(high, 2)}]`;
}

export function maxAbs(values: readonly number[]): number | undefined {
  return values.length
    ? values.reduce((worst, v) => Math.abs(v) > Math.abs(worst) ? v : worst)
    : undefined;
}

/** Rows of the comparison table: report key, what it means. */
/** The figures of a tool's column, in order, each with its line's title. */
const FIGURES = [
  ["latency_median_error_ms_worst", "dial latency: worst median error vs reference (ms)"],
  ["latency_p99_error_ms_worst", "dial latency: worst p99 error vs reference (ms)"],
  [
    "latency_median_error_ms_pooled",
    "dial latency: median error, every step pooled as excess over its reference median (ms)",
  ],
  [
    "latency_p99_error_ms_pooled",
    "dial latency: p99 error, every step pooled as excess over its reference median (ms)",
  ],
  [
    "latency_p99_error_ms_pooled_ci95",
    "dial latency: pooled p99 error, 95% bootstrap interval (ms)",
  ],
  ["latency_samples_per_step_min", "dial latency: fewest probes pooled in an accuracy step"],
  ["errors_on_slow_links", "dial errors on links that were only slow (false alarms)"],
  [
    "detection_poll_gap_median_ms",
    "detection: time between polls of a background tool, median (ms)",
  ],
  ["detection_poll_gap_p99_ms", "detection: time between polls of a background tool, p99 (ms)"],
  ["cut_observations", "cut node: observations (trials × observing nodes)"],
  ["cut_detection_median_ms", "cut node: detection, median (ms)"],
  ["cut_detection_mean_ms", "cut node: detection, mean (ms)"],
  ["cut_detection_mean_ci95_ms", "cut node: detection, mean's 95% confidence interval (± ms)"],
  ["cut_detection_max_ms", "cut node: detection, max (ms)"],
  ["cut_detection_missed", "cut node: observations not detected"],
  [
    "cut_detection_prometheus_mean_ms",
    "cut node: detection via a Prometheus scraping every interval, mean (ms)",
  ],
  [
    "cut_detection_prometheus_mean_ci95_ms",
    "cut node: detection via Prometheus, mean's 95% confidence interval (± ms)",
  ],
  [
    "cut_dial_errors_per_observation_mean",
    "cut node: dial errors counted for the cut peer, per observation, mean",
  ],
  ["cut_length_intervals_mean", "cut node: length of a cut in intervals (probes bound to fail)"],
  ["cut_false_alarms_on_healthy_peers", "cut node: errors counted for healthy peers"],
  ["dns_silent_detection_median_ms", "DNS server silent: detection, median (ms)"],
  ["dns_silent_detection_mean_ms", "DNS server silent: detection, mean (ms)"],
  ["dns_silent_detection_mean_ci95_ms", "DNS server silent: mean's 95% confidence interval (± ms)"],
  ["dns_silent_detection_missed", "DNS server silent: observations not detected"],
  [
    "dns_silent_detection_prometheus_mean_ms",
    "DNS server silent: detection via a Prometheus scraping every interval, mean (ms)",
  ],
  [
    "dns_silent_detection_prometheus_mean_ci95_ms",
    "DNS server silent: detection via Prometheus, mean's 95% confidence interval (± ms)",
  ],
  ["dns_servfail_detection_median_ms", "DNS SERVFAIL: detection, median (ms)"],
  ["dns_servfail_detection_mean_ms", "DNS SERVFAIL: detection, mean (ms)"],
  ["dns_servfail_detection_mean_ci95_ms", "DNS SERVFAIL: mean's 95% confidence interval (± ms)"],
  ["dns_servfail_detection_missed", "DNS SERVFAIL: observations not detected"],
  [
    "dns_servfail_detection_prometheus_mean_ms",
    "DNS SERVFAIL: detection via a Prometheus scraping every interval, mean (ms)",
  ],
  [
    "dns_servfail_detection_prometheus_mean_ci95_ms",
    "DNS SERVFAIL: detection via Prometheus, mean's 95% confidence interval (± ms)",
  ],
  ["rolling_restart_dial_errors", "rolling restart: dial errors counted (false alarms)"],
  ["series_left_for_old_pod_ips", "rolling restart: series left for old pod IPs"],
  [
    "loss_10_dial_errors_per_100",
    "10% loss node-0 → node-1: dials to node-1 failed per 100 (a lost SYN resent after 1 s)",
  ],
  ["loss_10_echo_small_lost", "10% loss: share of small echoes lost (tools that echo)"],
  [
    "mtu_black_hole_dial_errors_per_100",
    "MTU black hole (packets over 1,400 bytes dropped): dials failed per 100",
  ],
  ["mtu_black_hole_echo_full_lost", "MTU black hole: share of full-size echoes lost"],
  ["mtu_black_hole_echo_small_lost", "MTU black hole: share of small echoes lost"],
  ["steady_rss_mib", "resident memory per instance, steady (MiB)"],
  ["steady_cpu_seconds_per_1000_probes", "CPU s per 1,000 probes, steady"],
  ["steady_scrape_median_ms", "scrape (/metrics or /probe) median, steady (ms)"],
  ["steady_scrape_p99_ms", "scrape p99, steady (ms)"],
  ["load_probes_per_second", "load: probes per second"],
  ["load_rss_mib", "load: resident memory (MiB)"],
  ["load_cpu_seconds_per_1000_probes", "load: CPU s per 1,000 probes"],
  ["load_latency_median_error_ms", "load: dial latency median error vs reference (ms)"],
  ["load_latency_p99_error_ms", "load: dial latency p99 error vs reference (ms)"],
  ["load_latency_p99_error_ms_ci95", "load: p99 error, 95% bootstrap interval (ms)"],
  ["load_latency_samples", "load: probes pooled for the latency errors"],
  ["load_reference_samples", "load: reference handshakes beside them"],
  ["load_scrape_median_ms", "load: scrape median (ms)"],
  ["load_scrape_p99_ms", "load: scrape p99 (ms)"],
  ["load_scrape_head_median_ms", "load: scrape median to the answer's head, before its body (ms)"],
  [
    "load_scrape_round_trip_ms",
    "load: the scraper's round trip to the pod (TCP connect), median (ms)",
  ],
  [
    "load_scrape_own_time_ms",
    "load: its own time to answer (head less the round trip), median (ms)",
  ],
  [
    "busy_scrapes_per_second",
    "load + busy scraper: back-to-back scrapes of its metrics path per second",
  ],
  ["busy_scrape_median_ms", "load + busy scraper: its scrape median (ms)"],
  ["busy_latency_median_error_ms", "load + busy scraper: dial latency median error (ms)"],
  ["busy_latency_p99_error_ms", "load + busy scraper: dial latency p99 error (ms)"],
  ["busy_latency_p99_error_ms_ci95", "load + busy scraper: p99 error, 95% bootstrap interval (ms)"],
  ["busy_latency_samples", "load + busy scraper: probes pooled"],
  ["busy_rss_mib", "load + busy scraper: resident memory (MiB)"],
  ["api_requests_per_minute_per_instance", "Kubernetes API requests per minute per instance"],
  ["probes_while_unscraped_5_intervals", "probes run during 5 intervals without scrapes"],
  ["probing_depends_on_scraping", "probing depends on scraping"],
] as const satisfies ReadonlyArray<readonly [string, string]>;

export type DetectionView = `${Fault}_detection` | `${Fault}_detection_prometheus`;
/** Figures report.json keeps beyond the table's lines. */
type KeptFigure =
  | "steady_probes_per_second"
  | "loss_10_echo_full_lost"
  | `${Fault}_observations`
  | `${DetectionView}_${"median_ms" | "max_ms" | "all_ms" | "mean_ms" | "mean_ci95_ms" | "missed"}`;
/** A figure's value: a number, a verdict or an interval as text, every observation, or none. */
type Figure = number | string | null | ReadonlyArray<number | null>;
/**
 * One tool's figures, keyed by the table's own keys: a figure written under a
 * key the table does not know (a misspelling) is a type error, not a silently
 * missing line.
 */
export type ToolRow = { [Key in (typeof FIGURES)[number][0] | KeptFigure]?: Figure };

/** The report as Markdown: one column per tool, ratios against the first tool. */
export function markdown(report: Record<string, unknown>): string {
  const tools = report.tools as Record<string, Record<string, unknown>>;
  const names = Object.keys(tools);
  const [first, ...others] = names as [string, ...string[]];
  const cell = (value: unknown) => value === null || value === undefined ? "—" : String(value);
  const ratio = (mine: unknown, theirs: unknown) => {
    if (typeof mine !== "number" || typeof theirs !== "number" || mine === 0) return "—";
    return `${Number((Math.abs(theirs) / Math.abs(mine)).toPrecision(2))}×`;
  };
  const lines = [
    `${
      names.join(" vs ")
    }: ${report.nodes} simulated nodes, interval ${report.interval_ms} ms, timeout ${report.timeout_ms} ms, ${report.machine}, ${report.started}.`,
    "",
    `| figure | ${names.join(" | ")} | ${others.map((name) => `${name} ÷ ${first}`).join(" | ")} |`,
    `| --- | ${names.map(() => "---:").join(" | ")} | ${others.map(() => "---:").join(" | ")} |`,
    ...FIGURES.filter(([key]) => names.some((name) => key in tools[name]!)).map(([key, label]) =>
      `| ${label} | ${names.map((name) => cell(tools[name]![key])).join(" | ")} | ${
        others.map((name) => ratio(tools[first]![key], tools[name]![key])).join(" | ")
      } |`
    ),
    "",
    `| one-way delay (ms) | reference median / p99 (ms) | ${
      names.map((name) => `${name} median / p99 (ms)`).join(" | ")
    } |`,
    `| ---: | ---: | ${names.map(() => "---:").join(" | ")} |`,
    ...(report.accuracy as Array<Record<string, unknown>>).map((step) =>
      `| ${step.one_way_ms} | ${step.reference_median_ms} / ${step.reference_p99_ms} | ${
        names.map((name) => {
          const figures = step[name] as Record<string, unknown>;
          return `${cell(figures.median_ms)} / ${cell(figures.p99_ms)}`;
        }).join(" | ")
      } |`
    ),
    "",
    `| head to head | ${
      others.map((name) => `${name} − ${first} (ms) [95% interval] | verdict`).join(" | ")
    } |`,
    `| --- | ${others.map(() => "---: | ---").join(" | ")} |`,
    ...(report.head_to_head as Array<Record<string, unknown>>).map((row) =>
      `| ${row.figure}, ${row.statistic} | ${
        others.map((name) => {
          const outcome = row[name] as
            | { difference_ms: number; interval_ms: [number, number]; verdict: string }
            | null;
          return outcome
            ? `${outcome.difference_ms} [${outcome.interval_ms.join(", ")}] | ${outcome.verdict}`
            : "— | —";
        }).join(" | ")
      } |`
    ),
    "",
  ];
  return lines.join("\n");
}
