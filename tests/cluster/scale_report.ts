/**
 * The scale run's report: the measured figures per size, and the API
 * server's load on paper up to 5,000 nodes beside the original exporter and
 * goldpinger, each worked out from measured per-pod and per-event costs.
 * @module
 */

import type { SizeResult } from "./scale.ts";

/** Everything one scale run measured. */
export interface ScaleReport {
  readonly started: string;
  readonly machine: string;
  readonly kubernetes: string;
  readonly etcd: string;
  readonly real: number;
  readonly sizes: SizeResult[];
  /** The chart's default `updateStrategy.rollingUpdate.maxUnavailable`. */
  readonly chart_max_unavailable: string;
  readonly agent_errors: string[];
  readonly hollow_errors: string[];
  /** The last failed requests of hollow exporters (retried as the exporter retries). */
  readonly hollow_failure_samples: string[];
}

/** The original's scrape interval in the chart, and goldpinger's refresh: both every 30 s. */
export const POLL_SECONDS = 30;
/** Kubernetes truncates an Endpoints object at 1,000 addresses (since 1.22). */
export const ENDPOINTS_CAP = 1_000;

/** The API server's load from one DaemonSet at `nodes` nodes. */
export interface Projection {
  readonly nodes: number;
  readonly steady_requests_per_second: number;
  readonly steady_events_per_second: number;
  readonly steady_bytes_per_second: number;
  readonly rollout_minutes: number;
  readonly rollout_events: number;
  readonly rollout_event_bytes: number;
  readonly rollout_list_bytes: number;
  readonly rollout_events_per_second: number;
  readonly rollout_bytes_per_second: number;
  readonly original_requests_per_second: number;
  readonly original_bytes_per_second: number;
  readonly goldpinger_requests_per_second: number;
  readonly goldpinger_bytes_per_second: number;
}

/**
 * The load at `nodes` from the per-unit costs measured at `basis`:
 *
 * - steady state: each pod renews its watch as measured (per hour) and is
 *   sent the bookmarks measured per exporter;
 * - a rollout: every pod replaced makes `changes_per_pod_replaced` pod
 *   changes, of which every exporter (`nodes` of them) is sent the measured
 *   share (`events_per_change_per_exporter`: only running pods are watched)
 *   at the measured bytes per event; every new pod lists every pod at the measured bytes per
 *   listed pod; it lasts `rolloutSeconds(nodes)` (default: as measured,
 *   scaled with the pod count; the report passes {@link rolloutFit});
 * - the original: a GET of its Service and one of its Endpoints on every
 *   scrape, the Endpoints at the measured bytes per address up to the
 *   1,000-address cap; goldpinger: a list of every pod every 30 s, its pods
 *   taken at the size of ours.
 */
export function project(
  basis: SizeResult,
  nodes: number,
  rolloutSeconds: (nodes: number) => number = (count) =>
    basis.upgrade.seconds * count / basis.nodes,
): Projection {
  const { upgrade, steady, lists } = basis;
  const bytesPerListedPod = lists.bytes / lists.pods;
  const bytesPerAddress = basis.endpoints_addresses > 0
    ? basis.endpoints_bytes / basis.endpoints_addresses
    : 0;
  const rolloutEvents = upgrade.changes_per_pod_replaced *
    upgrade.events_per_change_per_exporter * nodes * nodes;
  const rolloutEventBytes = rolloutEvents * upgrade.bytes_per_event;
  const rolloutListBytes = nodes * nodes * bytesPerListedPod;
  const requestsPerPodPerHour = steady.lists_per_pod_per_hour + steady.watches_per_pod_per_hour;
  return {
    nodes,
    steady_requests_per_second: nodes * requestsPerPodPerHour / 3600,
    steady_events_per_second: nodes * steady.events_per_exporter_per_minute / 60,
    steady_bytes_per_second: nodes * steady.bytes_per_exporter_per_minute / 60,
    rollout_minutes: rolloutSeconds(nodes) / 60,
    rollout_events: rolloutEvents,
    rollout_event_bytes: rolloutEventBytes,
    rollout_list_bytes: rolloutListBytes,
    rollout_events_per_second: rolloutEvents / rolloutSeconds(nodes),
    rollout_bytes_per_second: (rolloutEventBytes + rolloutListBytes) / rolloutSeconds(nodes),
    original_requests_per_second: 2 * nodes / POLL_SECONDS,
    original_bytes_per_second: nodes / POLL_SECONDS *
      (basis.service_bytes + bytesPerAddress * Math.min(nodes, ENDPOINTS_CAP)),
    goldpinger_requests_per_second: nodes / POLL_SECONDS,
    goldpinger_bytes_per_second: nodes / POLL_SECONDS * nodes * bytesPerListedPod,
  };
}

/**
 * An upgrade's length by node count: the least-squares line through the
 * sizes measured (seconds = a + b × nodes: a for the ten rounds' fixed
 * waits, b for the controllers' requests per pod at their fixed rates), or,
 * from one size, proportional to the nodes.
 */
export function rolloutFit(sizes: readonly SizeResult[]): (nodes: number) => number {
  const points = sizes.map((size) => [size.nodes, size.upgrade.seconds] as const);
  if (points.length < 2) {
    const [only] = points;
    return only ? (nodes) => only[1] * nodes / only[0] : () => NaN;
  }
  const n = points.length;
  const meanX = points.reduce((sum, [x]) => sum + x, 0) / n;
  const meanY = points.reduce((sum, [, y]) => sum + y, 0) / n;
  const slope = points.reduce((sum, [x, y]) => sum + (x - meanX) * (y - meanY), 0) /
    points.reduce((sum, [x]) => sum + (x - meanX) ** 2, 0);
  const intercept = meanY - slope * meanX;
  return (nodes) => intercept + slope * nodes;
}

/** A byte count for people: B, KB, MB, GB (powers of 1,000). */
export function bytes(value: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/** A count for people: 1,234 / 1.2 M. */
export function count(value: number): string {
  if (value >= 1e9) return `${(value / 1e9).toFixed(1)} G`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)} M`;
  if (value >= 100) return Math.round(value).toLocaleString("en-US");
  return value.toFixed(value >= 10 ? 1 : 2).replace(/\.?0+$/, "") || "0";
}

const row = (cells: readonly (string | number)[]) => `| ${cells.join(" | ")} |`;

/** The report as Markdown: what was measured per size, then the projection. */
export function markdown(report: ScaleReport): string {
  const sizes = report.sizes;
  const header = (first: string) => [
    row([first, ...sizes.map((size) => `${size.nodes} nodes`)]),
    row(["---", ...sizes.map(() => "---:")]),
  ];
  const line = (name: string, cell: (size: SizeResult) => string | number) =>
    row([name, ...sizes.map(cell)]);
  const usage = (
    name: string,
    pick: (size: SizeResult) => import("./scale.ts").PlaneUsage,
  ) => [
    line(
      `${name}: API server cores (CPU s) / peak RSS MiB`,
      (size) =>
        `${pick(size).apiserver_cores} (${pick(size).apiserver_cpu_seconds}) / ${
          pick(size).apiserver_rss_mib_max
        }`,
    ),
    line(
      `${name}: etcd cores (CPU s) / peak RSS MiB`,
      (size) =>
        `${pick(size).etcd_cores} (${pick(size).etcd_cpu_seconds}) / ${
          pick(size).etcd_rss_mib_max
        }`,
    ),
  ];
  const largest = sizes[sizes.length - 1];
  const fit = rolloutFit(sizes);
  const projections = largest
    ? [...new Set([...sizes.map((size) => size.nodes), 5_000])].map((nodes) =>
      project(largest, nodes, fit)
    )
    : [];
  const projectionRow = (name: string, cell: (projection: Projection) => string) =>
    row([name, ...projections.map(cell)]);
  return [
    ...(largest ? [findings(report, largest, project(largest, 5_000, fit)), ""] : []),
    ...(largest && largest.nodes < 1_000
      ? [
        `**No 1,000-node figures here**: this report holds the sizes its run finished, up to ${largest.nodes} nodes; the projection works from those.`,
        "",
      ]
      : []),
    `Started ${report.started} on ${report.machine}; Kubernetes ${report.kubernetes}, etcd ${report.etcd}. ` +
    `${report.real} real nodes run the exporter; the rest are hollow (tests/cluster/hollow.ts), ` +
    `each pod of which asks the API server what an exporter asks. The chart's default ` +
    `\`maxUnavailable\` is ${report.chart_max_unavailable}.`,
    "",
    "### The API server and etcd",
    "",
    ...header("Phase"),
    ...usage("Baseline, no release", (size) => size.baseline),
    ...usage("Install", (size) => size.install.usage),
    ...usage("Steady state", (size) => size.steady.usage),
    ...usage("Upgrade (chart default)", (size) => size.upgrade.usage),
    ...usage("API server restart (first minute)", (size) => size.restart.usage),
    "",
    "### Watch traffic and lists",
    "",
    ...header("Figure"),
    line("Pod changes per pod replaced", (size) => size.upgrade.changes_per_pod_replaced),
    line(
      "Watch events to each exporter per pod change",
      (size) => size.upgrade.events_per_change_per_exporter,
    ),
    line("Bytes per watch event (exporters')", (size) => bytes(size.upgrade.bytes_per_event)),
    line(
      "API server: pod watch events sent per change, to every watcher",
      (size) => size.upgrade.apiserver_events_per_change,
    ),
    line(
      "Steady: events (bookmarks) per exporter per minute / bytes",
      (size) =>
        `${size.steady.events_per_exporter_per_minute} / ${
          bytes(size.steady.bytes_per_exporter_per_minute)
        }`,
    ),
    line("Steady: pod changes in the window", (size) => size.steady.pod_changes_in_window),
    line(
      "Steady: window started, seconds after every pod was Ready (install's events drained)",
      (size) => size.steady.settle_seconds ?? "15",
    ),
    line(
      "Every exporter, steady: lists / watches per pod per hour",
      (size) => `${size.steady.lists_per_pod_per_hour} / ${size.steady.watches_per_pod_per_hour}`,
    ),
    line(
      "Every exporter, steady: most requests in one second",
      (size) => size.steady.requests_peak_per_second,
    ),
    line("A list of every pod: bytes", (size) => bytes(size.lists.bytes)),
    line(
      "A list from etcd: ms / API server CPU ms / etcd CPU ms",
      (size) =>
        `${size.lists.etcd_ms} / ${size.lists.etcd_apiserver_cpu_ms} / ${size.lists.etcd_etcd_cpu_ms}`,
    ),
    line(
      "A list from the watch cache (resourceVersion=0): ms / API server CPU ms / etcd CPU ms",
      (size) =>
        `${size.lists.cache_ms} / ${size.lists.cache_apiserver_cpu_ms} / ${size.lists.cache_etcd_cpu_ms}`,
    ),
    line(
      "The Service's Endpoints object: bytes (addresses)",
      (size) => `${bytes(size.endpoints_bytes)} (${size.endpoints_addresses})`,
    ),
    "",
    "### The real exporters",
    "",
    ...header("Figure"),
    line(
      "Resident memory, MiB (min–max)",
      (size) => `${size.steady.real_rss_mib.min}–${size.steady.real_rss_mib.max}`,
    ),
    line(
      "Peak resident memory since start (VmHWM), MiB (min–max)",
      (size) => {
        const peaks = (size.steady.real_processes ?? []).map((process) => process.peak_rss);
        return peaks.length === 0 ? "–" : `${Math.min(...peaks)}–${Math.max(...peaks)}`;
      },
    ),
    line("V8 heap, MiB (max)", (size) => size.steady.real_heap_mib_max),
    line("CPU, cores (max)", (size) => size.steady.real_cores_max),
    line(
      "Peers discovered (min) / selected",
      (size) =>
        `${size.steady.real_discovered_min} / ${[...new Set(size.steady.real_selected)].join(",")}`,
    ),
    line(
      "Lists / watches per pod per hour, steady (audit log)",
      (size) =>
        `${size.steady.real_lists_per_pod_per_hour} / ${size.steady.real_watches_per_pod_per_hour}`,
    ),
    line(
      "Seconds from start to the first full peer list (min–max)",
      (size) => {
        const values = size.upgrade.real_seconds_to_peer_list;
        return values.length === 0 ? "–" : `${values[0]}–${values[values.length - 1]}`;
      },
    ),
    line(
      "After an API server restart: seconds until every one is current",
      (size) => String(size.restart.seconds_to_every_real_current ?? "never"),
    ),
    line(
      "Lists asked again after the restart: real / hollow",
      (size) => `${size.restart.relists_real} / ${size.restart.relists_hollow}`,
    ),
    "",
    "### Rollouts",
    "",
    ...header("Figure"),
    line("Install: seconds until every pod is Ready", (size) => size.install.seconds),
    line(
      "Upgrade, one pod at a time (old default): seconds per pod / projected minutes",
      (size) =>
        size.pace_old_default
          ? `${size.pace_old_default.seconds_per_pod} / ${size.pace_old_default.projected_minutes}`
          : "–",
    ),
    line(
      `Upgrade at the chart's default (${report.chart_max_unavailable}): seconds`,
      (size) => size.upgrade.seconds,
    ),
    line("… most pods unavailable at once", (size) => size.upgrade.max_unavailable_seen),
    line("… dial errors counted by the real exporters", (size) => size.upgrade.dial_errors_counted),
    line("… series left for pods gone", (size) => size.upgrade.stale_series),
    line(
      "… lists by new exporters / bytes per listed pod",
      (size) =>
        `${size.upgrade.lists_by_new_exporters} / ${bytes(size.upgrade.list_bytes_per_pod)}`,
    ),
    line("… hollow exporters' failed requests (retried)", (size) => size.upgrade.hollow_failures),
    line("Uninstall: seconds until every pod is gone", (size) => size.uninstall_seconds),
    "",
    `### On paper, from the ${largest?.nodes ?? "–"}-node figures`,
    "",
    row([
      "Per second unless said",
      ...projections.map((projection) => `${projection.nodes} nodes`),
    ]),
    row(["---", ...projections.map(() => "---:")]),
    projectionRow("net-exporter, steady: requests", (p) => count(p.steady_requests_per_second)),
    projectionRow(
      "net-exporter, steady: watch events / bytes",
      (p) => `${count(p.steady_events_per_second)} / ${bytes(p.steady_bytes_per_second)}`,
    ),
    projectionRow("net-exporter, rollout: minutes", (p) => count(p.rollout_minutes)),
    projectionRow(
      "net-exporter, rollout: watch events in all / bytes",
      (p) => `${count(p.rollout_events)} / ${bytes(p.rollout_event_bytes)}`,
    ),
    projectionRow("net-exporter, rollout: list bytes in all", (p) => bytes(p.rollout_list_bytes)),
    projectionRow(
      "net-exporter, rollout: watch events / bytes (events and lists)",
      (p) => `${count(p.rollout_events_per_second)} / ${bytes(p.rollout_bytes_per_second)}`,
    ),
    projectionRow(
      "original, always: requests / bytes",
      (p) => `${count(p.original_requests_per_second)} / ${bytes(p.original_bytes_per_second)}`,
    ),
    projectionRow(
      "goldpinger, always: requests / bytes",
      (p) => `${count(p.goldpinger_requests_per_second)} / ${bytes(p.goldpinger_bytes_per_second)}`,
    ),
    "",
    ...(report.agent_errors.length + report.hollow_errors.length > 0
      ? [
        "What the agents met:",
        "",
        ...[...report.agent_errors, ...report.hollow_errors].slice(0, 20).map((error) =>
          `- ${error}`
        ),
        "",
      ]
      : []),
  ].join("\n");
}

/** The run in a paragraph: what the largest size showed, and what it means at 5,000 nodes. */
function findings(report: ScaleReport, largest: SizeResult, at5000: Projection): string {
  const { upgrade, steady, lists, restart } = largest;
  const pace = largest.pace_old_default;
  return [
    `**What this run showed.** At ${largest.nodes} nodes an upgrade at the chart's default`,
    `(\`maxUnavailable: ${report.chart_max_unavailable}\`) replaced every pod in ${upgrade.seconds} s`,
    `with ${upgrade.dial_errors_counted} dial errors counted by the real exporters and`,
    `${upgrade.stale_series} series left for pods gone${
      pace
        ? `; one pod at a time (the old default) took ${pace.seconds_per_pod} s a pod, about ${
          Math.round(pace.projected_minutes)
        } minutes for all`
        : ""
    }. In steady state the exporters made ${steady.lists_per_pod_per_hour} lists and`,
    `${steady.watches_per_pod_per_hour} watch requests per pod per hour, and the real ones held`,
    `${steady.real_rss_mib.max} MiB at most with ${steady.real_discovered_min} peers in their cache.`,
    `Each pod replaced made ${upgrade.changes_per_pod_replaced} pod changes, of which every exporter`,
    `was sent ${
      count(upgrade.changes_per_pod_replaced * upgrade.events_per_change_per_exporter)
    } (it watches running pods only) at ${
      bytes(upgrade.bytes_per_event)
    } an event: the watch traffic of a rollout grows with the square`,
    `of the nodes. At 5,000 nodes that is ${count(at5000.rollout_events)} events,`,
    `${bytes(at5000.rollout_event_bytes)}, plus ${
      bytes(at5000.rollout_list_bytes)
    } of lists (every`,
    `new pod lists every pod), over about ${Math.round(at5000.rollout_minutes)} minutes; in steady`,
    `state it is ${count(at5000.steady_requests_per_second)} requests a second. A list of`,
    `${lists.pods} pods took ${lists.etcd_ms} ms from etcd and ${lists.cache_ms} ms from the`,
    `API server's watch cache, which the first list after a start now asks for. After an API`,
    `server restart every real exporter was current within ${
      restart.seconds_to_every_real_current ?? "–"
    } s.`,
  ].join(" ");
}

/** Every figure that is not what it must be, in words; empty when the run proves its claims. */
export function judge(report: ScaleReport): string[] {
  const problems: string[] = [];
  const expect = (ok: boolean, what: string) => ok || problems.push(what);
  for (const size of report.sizes) {
    const at = `at ${size.nodes} nodes`;
    expect(
      size.upgrade.dial_errors_counted === 0,
      `${size.upgrade.dial_errors_counted} dial errors in the upgrade ${at}`,
    );
    expect(
      size.upgrade.stale_series === 0,
      `${size.upgrade.stale_series} series left for pods gone ${at}`,
    );
    expect(
      size.steady.real_lists_per_pod_per_hour === 0,
      `the real exporters listed in steady state ${at}`,
    );
    expect(
      size.steady.real_discovered_min === size.nodes - 1,
      `a real exporter discovered ${size.steady.real_discovered_min} peers, not ${
        size.nodes - 1
      }, ${at}`,
    );
    expect(
      size.restart.seconds_to_every_real_current !== null,
      `the real exporters were not all current after the API server restart ${at}`,
    );
  }
  const largest = report.sizes[report.sizes.length - 1];
  if (largest && largest.nodes >= 1_000) {
    expect(
      largest.upgrade.seconds < 600,
      `the ${largest.nodes}-node upgrade took ${largest.upgrade.seconds} s, not under 10 minutes`,
    );
  }
  return problems;
}
