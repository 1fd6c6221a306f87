/**
 * The chart's alerts and dashboard against a real Prometheus watching the
 * simulated cluster: each scenario breaks something, records every alert's
 * pending → firing → resolved times from Prometheus's API, and judges them —
 * every expected alert fired within its bound and resolved after the repair,
 * no other alert fired, and (for the rolling restart) nothing was pending for
 * longer than one evaluation. Every query of every dashboard panel must
 * return data.
 *
 * Intervals are shortened together through the chart's values (see
 * {@link RUN_VALUES}); the rules are the rendered PrometheusRule's, unedited.
 * @module
 */

import type { SimCluster, SimNode } from "./cluster.ts";
import {
  alertKey,
  AlertRecorder,
  EndpointsMirror,
  type Monitoring,
  type PrometheusServer,
  renderMonitoring,
  scrapeJob,
  startPrometheus,
} from "./prometheus.ts";
import { startNtpServer, type TestNtpServer } from "../helpers/ntp_server.ts";
import { parseDuration } from "../../lib/duration.ts";

/** The simulated release: name and namespace, as the stand-in API server lists its pods. */
export const RELEASE = "net-exporter";
export const NAMESPACE = "monitoring";

/**
 * The chart values of the run. Scrapes and evaluations every 5 s instead of
 * 30 s, rates over 1 m instead of 5 m, `for:` 30 s instead of 5–10 m, and a
 * 30 s staleness threshold instead of 900 s: all through values, so the rules
 * are the chart's own. The p95 threshold is 280 ms (a bucket edge) so that a
 * 300 ms link is slow without timing out.
 */
export const RUN_VALUES: Readonly<Record<string, string>> = {
  "serviceMonitor.interval": "5s",
  "serviceMonitor.scrapeTimeout": "4s",
  "prometheusRule.rateWindow": "1m",
  "prometheusRule.discoveryStaleSeconds": "30",
  "prometheusRule.latencyP95Seconds": "0.28",
  "prometheusRule.for.targetUnreachable": "30s",
  "prometheusRule.for.observerFailing": "30s",
  "prometheusRule.for.highNetworkLatency": "30s",
  "prometheusRule.for.dnsErrors": "30s",
  "prometheusRule.for.clockSkew": "30s",
  "prometheusRule.for.down": "30s",
  "prometheusRule.for.absent": "30s",
  "prometheusRule.for.discoveryStale": "30s",
  // 2% lost on a link stays quiet, 10% fires: a threshold between them, clear of both.
  "prometheusRule.packetLossRatio": "0.05",
  "prometheusRule.for.packetLoss": "30s",
  "prometheusRule.for.mtuBlackhole": "30s",
};
/** Prometheus's evaluation interval: the scrape interval, shortened with it. */
export const EVALUATION_INTERVAL = "5s";
/** Probe interval and timeout of the simulated exporters. */
export const PROBE_INTERVAL_MS = 2_000;
export const PROBE_TIMEOUT_MS = 1_000;
/** How often the stand-in API server sends a bookmark, as a real one does about every minute. */
const BOOKMARK_EVERY_MS = 5_000;

const ms = (duration: string) => parseDuration(duration);
const value = (name: string) => {
  const text = RUN_VALUES[name];
  if (text === undefined) throw new Error(`Cannot read the run's values: ${name} is not set`);
  return text;
};

/** One expected alert: its name and the labels that pick it out. */
export interface Expected {
  readonly alert: string;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * Milliseconds from the fault until the rule's condition can first be true
   * (e.g. half the rate window for a "most dials failed" ratio); the bound to
   * fire is this + `for:` + two scrape intervals + one evaluation.
   */
  readonly onsetMs: number;
  /** The value holding its `for:`. */
  readonly forValue: string;
}

/** A scenario: what it breaks, what must fire, how it is repaired. */
export interface Scenario {
  readonly name: string;
  readonly expected: (cluster: SimCluster) => Expected[];
  apply(harness: AlertHarness): Promise<void>;
  restore(harness: AlertHarness): Promise<void>;
  /** For scenarios that expect nothing: how long to watch after `apply` returns. */
  readonly watchMs?: number;
}

/** What one scenario showed. */
export interface ScenarioResult {
  readonly name: string;
  readonly expected: Array<{
    alert: string;
    labels: Record<string, string>;
    pending_s: number | null;
    firing_s: number | null;
    fire_bound_s: number;
    resolved_s: number | null;
    resolve_bound_s: number;
    ok: boolean;
  }>;
  /** Alerts that fired though not expected ("name{labels}"). */
  readonly unexpected_firing: string[];
  /** Alerts that were pending though not expected, with how long, seconds. */
  readonly unexpected_pending: Array<{ alert: string; seconds: number }>;
  readonly ok: boolean;
}

/** Everything a scenario acts on. */
export class AlertHarness implements AsyncDisposable {
  readonly #disposers: Array<() => PromiseLike<void>> = [];
  monitoring!: Monitoring;
  prometheus!: PrometheusServer;
  recorder!: AlertRecorder;
  ntp!: TestNtpServer;
  #bookmarks: ReturnType<typeof setInterval> | undefined;

  private constructor(readonly cluster: SimCluster, readonly dir: string) {}

  /** The flags each simulated exporter gets besides the cluster's own. */
  get exporterArgs(): string[] {
    return [
      `--ntp.servers=${this.ntp.address}`,
      "--ntp.interval=5s",
      "--ntp.timeout=1s",
      // Echo rounds as often as the probes, so a 1 m rate window holds 30 of them.
      `--echo.interval=${PROBE_INTERVAL_MS}ms`,
      `--echo.timeout=${PROBE_TIMEOUT_MS}ms`,
    ];
  }

  /**
   * Renders the chart, starts an SNTP server on the control point, the
   * exporters, the endpoints mirror, Prometheus and the alert recorder, and
   * waits until every exporter is scraped and has a rate window of data.
   */
  static async create(cluster: SimCluster): Promise<AlertHarness> {
    const dir = await Deno.makeTempDir({ prefix: "net-exporter-prometheus-" });
    const harness = new AlertHarness(cluster, dir);
    // However the cluster goes (Ctrl-C included), Prometheus stops first.
    cluster.beforeTeardown(() => harness[Symbol.asyncDispose]());
    harness.#disposers.push(() => Deno.remove(dir, { recursive: true }));
    try {
      await harness.#start();
    } catch (error) {
      await harness[Symbol.asyncDispose]();
      throw error;
    }
    return harness;
  }

  async #start(): Promise<void> {
    this.monitoring = await renderMonitoring(RELEASE, NAMESPACE, RUN_VALUES);
    this.ntp = startNtpServer({ offsetMs: 3 }, this.cluster.controlAddress);
    this.#disposers.push(() => this.ntp[Symbol.asyncDispose]());
    this.#bookmarks = setInterval(() => this.cluster.api.bookmark(), BOOKMARK_EVERY_MS);
    await this.cluster.startExporters(this.exporterArgs);
    const file = `${this.dir}/targets.json`;
    const mirror = new EndpointsMirror(this.cluster.api, this.monitoring.service, file);
    this.#disposers.push(() => mirror[Symbol.asyncDispose]());
    await mirror.sync();
    this.prometheus = await startPrometheus({
      job: scrapeJob(this.monitoring.serviceMonitor, this.monitoring.service, { file }),
      ruleGroups: this.monitoring.ruleGroups,
      evaluationInterval: EVALUATION_INTERVAL,
      dir: this.dir,
    });
    // Prometheus stops before the cluster's addresses go: it never dials them once they would leave the run's namespaces.
    this.#disposers.push(() => this.prometheus[Symbol.asyncDispose]());
    this.recorder = new AlertRecorder(this.prometheus);
    this.#disposers.push(() => this.recorder[Symbol.asyncDispose]());
    const nodes = this.cluster.nodes.length;
    await waitUntil(
      async () => {
        const up = await this.prometheus.query(`sum(up{job="${RELEASE}"})`);
        return Number(up[0]?.value[1] ?? 0) === nodes;
      },
      60_000,
      `all ${nodes} exporters scraped`,
    );
    // A full rate window of data before anything is judged.
    await sleep(ms(value("prometheusRule.rateWindow")) + 2 * ms(value("serviceMonitor.interval")));
  }

  /** Alerts active now, as "name{labels}". */
  activeAlerts(): string[] {
    return this.recorder.active().map(({ labels }) => describe(labels));
  }

  #disposing: Promise<void> | undefined;

  /** Stops everything it started, once; a second call waits for the first. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.#disposing ??= this.#dispose();
  }

  async #dispose(): Promise<void> {
    if (this.#bookmarks !== undefined) clearInterval(this.#bookmarks);
    for (const dispose of this.#disposers.reverse()) {
      try {
        await dispose();
      } catch { /* the rest still goes */ }
    }
  }
}

function describe(labels: Record<string, string>): string {
  const { alertname, severity: _, ...rest } = labels;
  return `${alertname}{${alertKey(rest)}}`;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitUntil(
  condition: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await Promise.resolve().then(condition).catch(() => false)) return true;
    await sleep(500);
  }
  throw new Error(`Cannot go on: ${what} did not happen within ${timeoutMs / 1000} s`);
}

/** Figures the bounds are made of, from the run's values. */
function timing() {
  return {
    scrapeMs: ms(value("serviceMonitor.interval")),
    evaluationMs: ms(EVALUATION_INTERVAL),
    windowMs: ms(value("prometheusRule.rateWindow")),
  };
}

function expected(
  alert: string,
  labels: Record<string, string>,
  onsetMs: number,
  forKey: string,
): Expected {
  return { alert, labels, onsetMs, forValue: value(`prometheusRule.for.${forKey}`) };
}

/** "Most dials failed" needs half the rate window of failures, each a timeout late. */
const ratioOnset = () => timing().windowMs / 2 + PROBE_INTERVAL_MS + PROBE_TIMEOUT_MS;

const others = (cluster: SimCluster, node: SimNode) =>
  cluster.nodes.filter((other) => other !== node);

/**
 * `loss` of the packets from node-0 to node-1, one way. Both pairs of that
 * link see it: node-0's echoes go out over it, node-1's replies come back
 * over it. `alerts` are what must fire for both pairs; nothing else may.
 */
function lossScenario(loss: number, alerts: readonly string[]): Scenario {
  return {
    name: `${loss * 100}% packet loss on one link (threshold ${
      Number(value("prometheusRule.packetLossRatio")) * 100
    }%)`,
    expected: (cluster) => {
      const [a, b] = [cluster.nodes[0]!, cluster.nodes[1]!];
      // The lost share over the rate window crosses the threshold as the window fills with loss.
      const onset = timing().windowMs *
          (Number(value("prometheusRule.packetLossRatio")) / loss) + PROBE_INTERVAL_MS;
      return alerts.flatMap((alert) => [
        expected(alert, { node: a.name, target_node: b.name }, onset, "packetLoss"),
        expected(alert, { node: b.name, target_node: a.name }, onset, "packetLoss"),
      ]);
    },
    ...(alerts.length === 0 ? { watchMs: 2 * 60_000 } : {}),
    apply: (harness) =>
      harness.cluster.setLink(harness.cluster.nodes[0]!, harness.cluster.nodes[1]!, { loss }),
    restore: (harness) =>
      harness.cluster.setLink(harness.cluster.nodes[0]!, harness.cluster.nodes[1]!, {}),
  };
}

/** Every scenario, in the order a full run takes them. */
export const SCENARIOS: readonly Scenario[] = [
  {
    name: "a node cut off from every other node",
    expected: (cluster) => {
      const cut = cluster.nodes[1]!;
      return [
        expected(
          "NetExporterTargetUnreachable",
          { target_node: cut.name },
          ratioOnset(),
          "targetUnreachable",
        ),
        // The cut node cannot reach its peers either: it is an observer that fails, rightly.
        expected("NetExporterObserverFailing", { node: cut.name }, ratioOnset(), "observerFailing"),
      ];
    },
    apply: (harness) => harness.cluster.isolate(harness.cluster.nodes[1]!, "cut"),
    restore: (harness) => harness.cluster.isolate(harness.cluster.nodes[1]!, {}),
  },
  {
    name: "a full rolling restart of every pod",
    expected: () => [],
    watchMs: 2 * 5_000 + 60_000,
    apply: async (harness) => {
      for (const node of harness.cluster.nodes) {
        await harness.cluster.restart(node, () => sleep(2_000), harness.exporterArgs);
      }
    },
    restore: () => Promise.resolve(),
  },
  {
    name: "one observer whose outgoing connections fail (its SYNs dropped)",
    expected: (cluster) => [
      expected(
        "NetExporterObserverFailing",
        { node: cluster.nodes[0]!.name },
        ratioOnset(),
        "observerFailing",
      ),
    ],
    apply: (harness) => {
      const node = harness.cluster.nodes[0]!;
      return Promise.all(
        others(harness.cluster, node).map((other) =>
          harness.cluster.setLink(node, other, { syn_loss: 1 })
        ),
      )
        .then(() => {});
    },
    restore: (harness) => {
      const node = harness.cluster.nodes[0]!;
      return Promise.all(
        others(harness.cluster, node).map((other) => harness.cluster.setLink(node, other, {})),
      )
        .then(() => {});
    },
  },
  {
    name: "the DNS server answers SERVFAIL",
    expected: (cluster) =>
      cluster.nodes.map((node) =>
        expected(
          "NetExporterDNSErrors",
          { node: node.name },
          timing().windowMs * 0.1 + PROBE_INTERVAL_MS,
          "dnsErrors",
        )
      ),
    apply: (harness) => {
      harness.cluster.dns.behaviour = () => ({ rcode: "SERVFAIL" });
      return Promise.resolve();
    },
    restore: (harness) => {
      harness.cluster.dns.behaviour = () => ({ a: ["192.0.2.1"] });
      return Promise.resolve();
    },
  },
  {
    name: "the DNS server falls silent",
    expected: (cluster) =>
      cluster.nodes.map((node) =>
        expected(
          "NetExporterDNSErrors",
          { node: node.name },
          timing().windowMs * 0.1 + PROBE_INTERVAL_MS + PROBE_TIMEOUT_MS,
          "dnsErrors",
        )
      ),
    apply: (harness) => {
      harness.cluster.dns.behaviour = () => ({ silent: true });
      return Promise.resolve();
    },
    restore: (harness) => {
      harness.cluster.dns.behaviour = () => ({ a: ["192.0.2.1"] });
      return Promise.resolve();
    },
  },
  {
    name: "300 ms round trips on one link (threshold 280 ms)",
    expected: (cluster) => {
      const [a, b] = [cluster.nodes[0]!, cluster.nodes[2]!];
      // A handshake crosses the link both ways: both directions of the pair are slow.
      return [
        expected(
          "NetExporterHighNetworkLatency",
          { node: a.name, target_node: b.name },
          timing().windowMs * 0.05 + PROBE_INTERVAL_MS,
          "highNetworkLatency",
        ),
        expected(
          "NetExporterHighNetworkLatency",
          { node: b.name, target_node: a.name },
          timing().windowMs * 0.05 + PROBE_INTERVAL_MS,
          "highNetworkLatency",
        ),
      ];
    },
    apply: async (harness) => {
      const [a, b] = [harness.cluster.nodes[0]!, harness.cluster.nodes[2]!];
      await harness.cluster.setLink(a, b, { delay_ms: 150 });
      await harness.cluster.setLink(b, a, { delay_ms: 150 });
    },
    restore: async (harness) => {
      const [a, b] = [harness.cluster.nodes[0]!, harness.cluster.nodes[2]!];
      await harness.cluster.setLink(a, b, {});
      await harness.cluster.setLink(b, a, {});
    },
  },
  lossScenario(0.02, []),
  lossScenario(0.1, ["NetExporterPacketLoss"]),
  {
    name: "an MTU black hole on one link (every packet over 1,400 bytes dropped, no ICMP back)",
    expected: (cluster) => {
      const [a, b] = [cluster.nodes[0]!, cluster.nodes[1]!];
      // The full-size share over the rate window reaches 90% after 90% of the window.
      const onset = timing().windowMs * 0.9 + PROBE_INTERVAL_MS;
      return [
        expected(
          "NetExporterMTUBlackhole",
          { node: a.name, target_node: b.name },
          onset,
          "mtuBlackhole",
        ),
        expected(
          "NetExporterMTUBlackhole",
          { node: b.name, target_node: a.name },
          onset,
          "mtuBlackhole",
        ),
      ];
    },
    apply: async (harness) => {
      const [a, b] = [harness.cluster.nodes[0]!, harness.cluster.nodes[1]!];
      await harness.cluster.setLink(a, b, { max_size: 1_400 });
      await harness.cluster.setLink(b, a, { max_size: 1_400 });
    },
    restore: async (harness) => {
      const [a, b] = [harness.cluster.nodes[0]!, harness.cluster.nodes[1]!];
      await harness.cluster.setLink(a, b, {});
      await harness.cluster.setLink(b, a, {});
    },
  },
  {
    name: "the API server answers 503 and drops every watch",
    expected: (cluster) =>
      cluster.nodes.map((node) =>
        expected(
          "NetExporterDiscoveryStale",
          { node: node.name },
          Number(value("prometheusRule.discoveryStaleSeconds")) * 1000 + BOOKMARK_EVERY_MS,
          "discoveryStale",
        )
      ),
    apply: (harness) => {
      harness.cluster.api.failWith = 503;
      harness.cluster.api.dropWatches();
      return Promise.resolve();
    },
    restore: (harness) => {
      harness.cluster.api.failWith = undefined;
      return Promise.resolve();
    },
  },
  {
    name: "one exporter killed (its pod turns not ready)",
    expected: (cluster) => [
      expected("NetExporterDown", { node: cluster.nodes[2]!.name }, timing().scrapeMs, "down"),
    ],
    apply: (harness) => kill(harness, harness.cluster.nodes[2]!),
    restore: (harness) => revive(harness, harness.cluster.nodes[2]!),
  },
  {
    name: "every exporter killed",
    expected: (cluster) => [
      expected("NetExporterAbsent", {}, timing().scrapeMs, "absent"),
      ...cluster.nodes.map((node) =>
        expected("NetExporterDown", { node: node.name }, timing().scrapeMs, "down")
      ),
    ],
    apply: async (harness) => {
      for (const node of harness.cluster.nodes) await kill(harness, node);
    },
    restore: async (harness) => {
      for (const node of harness.cluster.nodes) await revive(harness, node);
    },
  },
];

/** SIGKILL, and the kubelet's view of it: the pod is no longer ready. */
async function kill(harness: AlertHarness, node: SimNode): Promise<void> {
  node.exporter!.child.kill("SIGKILL");
  await node.exporter!.stop();
  harness.cluster.applyPod(node, false);
}

/** The DaemonSet's answer to a dead pod: a new one. */
async function revive(harness: AlertHarness, node: SimNode): Promise<void> {
  await harness.cluster.restart(node, () => Promise.resolve(), harness.exporterArgs);
}

function matches(labels: Record<string, string>, wanted: Expected): boolean {
  return labels.alertname === wanted.alert &&
    Object.entries(wanted.labels).every(([name, value]) => labels[name] === value);
}

/**
 * Runs one scenario: applies the fault, waits until every expected alert
 * fires (or its bound passes), repairs, waits until every alert has resolved,
 * and judges the recorded timeline.
 */
export async function runScenario(
  harness: AlertHarness,
  scenario: Scenario,
): Promise<ScenarioResult> {
  const { recorder, cluster } = harness;
  const { scrapeMs, evaluationMs, windowMs } = timing();
  const wanted = scenario.expected(cluster);
  const fireBound = (item: Expected) =>
    item.onsetMs + ms(item.forValue) + 2 * scrapeMs + evaluationMs;
  // Once the fault is gone, a rate window has to pass before a ratio falls back (a relist may first wait its backoff).
  const resolveBoundMs = windowMs + 2 * scrapeMs + evaluationMs + 30_000;
  const start = recorder.now();
  console.error(`scenario: ${scenario.name}`);
  await scenario.apply(harness);
  const firing = (item: Expected) =>
    recorder.active().some(({ labels, state }) => state === "firing" && matches(labels, item));
  if (wanted.length > 0) {
    const longest = Math.max(...wanted.map(fireBound)) + 15_000;
    await waitUntil(
      () => wanted.every(firing),
      longest,
      `${scenario.name}: every expected alert firing`,
    ).catch(() => false);
  } else {
    await sleep(scenario.watchMs ?? 60_000);
  }
  const repairedAt = recorder.now();
  await scenario.restore(harness);
  await waitUntil(
    () => recorder.active().length === 0,
    resolveBoundMs + 30_000,
    `${scenario.name}: every alert resolved`,
  )
    .catch(() => false);
  const end = recorder.now();
  const events = recorder.events.filter((event) => event.at >= start && event.at <= end);
  const seconds = (at: number | undefined, from: number) =>
    at === undefined ? null : Math.round((at - from) / 100) / 10;
  const results = wanted.map((item) => {
    const mine = events.filter((event) => matches(event.labels, item));
    const pending = mine.find((event) => event.state === "pending")?.at;
    const fired = mine.find((event) => event.state === "firing")?.at;
    const resolved = mine.find((event) => event.state === "resolved" && event.at >= repairedAt)?.at;
    const fireBoundMs = fireBound(item);
    return {
      alert: item.alert,
      labels: { ...item.labels },
      pending_s: seconds(pending, start),
      firing_s: seconds(fired, start),
      fire_bound_s: Math.round(fireBoundMs / 100) / 10,
      resolved_s: seconds(resolved, repairedAt),
      resolve_bound_s: Math.round(resolveBoundMs / 100) / 10,
      ok: fired !== undefined && fired - start <= fireBoundMs && resolved !== undefined &&
        resolved - repairedAt <= resolveBoundMs,
    };
  });
  const isExpected = (labels: Record<string, string>) =>
    wanted.some((item) => matches(labels, item));
  const unexpectedFiring = [
    ...new Set(
      events.filter((event) => event.state === "firing" && !isExpected(event.labels)).map((event) =>
        describe(event.labels)
      ),
    ),
  ];
  // How long each unexpected alert stayed pending: from pending to its next change.
  const unexpectedPending: Array<{ alert: string; seconds: number }> = [];
  events.forEach((event, index) => {
    if (event.state !== "pending" || isExpected(event.labels)) return;
    const key = alertKey(event.labels);
    const next = events.slice(index + 1).find((later) => alertKey(later.labels) === key);
    unexpectedPending.push({
      alert: describe(event.labels),
      seconds: Math.round(((next?.at ?? end) - event.at) / 100) / 10,
    });
  });
  // Pending for longer than one evaluation (plus the recorder's 1 s poll) counts against a quiet scenario.
  const quietEnough = wanted.length > 0 ||
    unexpectedPending.every((item) => item.seconds * 1000 <= evaluationMs + 1_000);
  const result = {
    name: scenario.name,
    expected: results,
    unexpected_firing: unexpectedFiring,
    unexpected_pending: unexpectedPending,
    ok: results.every((item) => item.ok) && unexpectedFiring.length === 0 && quietEnough,
  };
  console.error(JSON.stringify(result));
  // A moment for counters to settle before the next scenario's baseline.
  await sleep(2 * scrapeMs);
  return result;
}

/** One dashboard query and whether it returned data. */
export interface PanelQuery {
  readonly panel: string;
  readonly expr: string;
  readonly series: number;
}

/**
 * Evaluates every query of every panel of the chart's dashboard with its
 * variables filled in as Grafana would ("All" for the node variables,
 * the chart's job for `$job`, `$__rate_interval` as four scrape intervals).
 */
export async function dashboardQueries(prometheus: PrometheusServer): Promise<PanelQuery[]> {
  const dashboard = JSON.parse(
    await Deno.readTextFile(new URL("../../chart/dashboards/net-exporter.json", import.meta.url)),
  ) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
  const rateInterval = `${4 * timing().scrapeMs / 1000}s`;
  const rows: PanelQuery[] = [];
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) {
      const expr = target.expr
        .replaceAll("$__rate_interval", rateInterval)
        .replaceAll("$job", "net-exporter")
        .replaceAll("$node", ".*")
        .replaceAll("$target_node", ".*");
      const result = await prometheus.query(expr);
      rows.push({ panel: panel.title, expr, series: result.length });
    }
  }
  return rows;
}

/** The report of a run as Markdown: one table of alert → scenario → times, then the panels. */
export function markdown(report: {
  started: string;
  machine: string;
  nodes: number;
  scenarios: ScenarioResult[];
  panels: PanelQuery[];
}): string {
  const { scrapeMs, evaluationMs, windowMs } = timing();
  const lines = [
    `${report.nodes} simulated nodes, ${report.machine}, ${report.started}. Prometheus scrapes every ${
      scrapeMs / 1000
    } s and evaluates every ${evaluationMs / 1000} s; the chart's rules with rate window ${
      windowMs / 1000
    } s, \`for:\` ${value("prometheusRule.for.targetUnreachable")} and a ${
      value("prometheusRule.discoveryStaleSeconds")
    } s staleness threshold, set through values; probes every ${
      PROBE_INTERVAL_MS / 1000
    } s. Times in seconds from the fault (fire) and from the repair (resolve); the bound to fire is the rule's onset + \`for:\` + two scrapes + one evaluation.`,
    "",
    "| alert | scenario | labels | pending | firing | bound | resolved | bound | ok |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const scenario of report.scenarios) {
    if (scenario.expected.length === 0) {
      const pending = scenario.unexpected_pending.map((item) => `${item.alert} ${item.seconds} s`)
        .join(", ");
      lines.push(
        `| (none) | ${scenario.name} | | ${pending || "none"} | ${
          scenario.unexpected_firing.join(", ") || "none"
        } | | | | ${scenario.ok ? "yes" : "**no**"} |`,
      );
      continue;
    }
    for (const item of scenario.expected) {
      lines.push(
        `| ${item.alert} | ${scenario.name} | ${alertKey(item.labels)} | ${
          item.pending_s ?? "-"
        } | ${item.firing_s ?? "never"} | ${item.fire_bound_s} | ${
          item.resolved_s ?? "never"
        } | ${item.resolve_bound_s} | ${item.ok ? "yes" : "**no**"} |`,
      );
    }
    if (scenario.unexpected_firing.length > 0) {
      lines.push(
        `| **unexpected** | ${scenario.name} | ${
          scenario.unexpected_firing.join(", ")
        } | | | | | | **no** |`,
      );
    }
  }
  const blank = report.panels.filter((panel) => panel.series === 0);
  lines.push(
    "",
    `Dashboard: ${report.panels.length} queries of ${
      new Set(report.panels.map((panel) => panel.panel)).size
    } panels evaluated, ${blank.length} returned no data${
      blank.length ? `: ${blank.map((panel) => panel.panel).join("; ")}` : ""
    }.`,
    "",
  );
  return lines.join("\n");
}
