/**
 * `deno task compare`: net-exporter beside the tools users run today
 * (compare.yaml), every one on every simulated node, through the same
 * scenarios in one run: accuracy at several injected delays against an
 * independent reference, detection of a cut node and of a silent or SERVFAIL
 * DNS server, a rolling restart, and load (many peers, a busy scraper).
 * Writes report.json and report.md.
 *
 * Usage (as root): deno task compare [--nodes=5] [--crowd=500] [--config=tests/sim/compare.yaml] [--out=compare-report]
 * @module
 */

import { parseArgs } from "node:util";
import { settleAll } from "../helpers/settle.ts";
import { median } from "../helpers/stats.ts";
import { rewriteDocsBlock } from "../helpers/docs.ts";
import {
  createForCommandLine,
  exitAfterTeardown,
  type SimCluster,
  type SimNode,
} from "./cluster.ts";
import {
  detectionMs,
  errorCount,
  firstScrapeFrom,
  latency,
  peerLabels,
  probeCount,
  probesWhilePaused,
  quantile,
  Recorder,
  scrapeTimes,
  type Selection,
  ServiceDiscovery,
} from "./recording.ts";
import type { ProcessUsage } from "../helpers/proc.ts";
import { loadTools, longestProbeMs, type ToolConfig, ToolInstance } from "./tools.ts";

/** How often background tools are scraped while a detection trial runs. */
const DETECTION_POLL_MS = 50;
const BOOTSTRAP_ROUNDS = 1_000;
/** Reference handshakes per interval under load: p99 of a 20-interval window rests on 400. */
const LOAD_REFERENCE_PER_INTERVAL = 20;

/** What to run. */
export interface CompareOptions {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** One-way delays (ms) of the accuracy steps. */
  readonly delaysMs: readonly number[];
  /** Intervals each accuracy step records for. */
  readonly windowIntervals: number;
  /** Cut-node trials (each cuts another node), and DNS trials of each kind. */
  readonly trials: number;
  /** Crowd pods for the load phase; 0 skips it. */
  readonly crowd: number;
  readonly log?: (line: string) => void;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (value: number | undefined | null, digits = 3) =>
  value === undefined || value === null || Number.isNaN(value)
    ? null
    : Math.round(value * 10 ** digits) / 10 ** digits;
/** The median, or undefined where there is nothing to take it of (a row then shows none). */
const medianOf = (values: readonly number[]) => values.length === 0 ? undefined : median(values);

/** One tool running on every node, scraped. */
class Fleet {
  readonly tool: ToolConfig;
  readonly token: string;
  readonly recorders = new Map<SimNode, Recorder>();
  readonly instances = new Map<SimNode, ToolInstance>();
  /** Usage of processes that have exited, so totals survive restarts. */
  retiredCpuSeconds = 0;

  constructor(tool: ToolConfig, token: string) {
    this.tool = tool;
    this.token = token;
  }

  async startOn(
    node: SimNode,
    cluster: SimCluster,
    options: CompareOptions,
    extraArgs: readonly string[] = [],
  ): Promise<void> {
    const instance = await ToolInstance.start(this.tool, node, cluster, this.token, {
      intervalMs: options.intervalMs,
      timeoutMs: options.timeoutMs,
      extraArgs,
    });
    this.instances.set(node, instance);
    this.recorders.get(node)!.instance = instance;
  }

  async stopOn(node: SimNode): Promise<void> {
    const instance = this.instances.get(node);
    if (!instance) return;
    this.retiredCpuSeconds += (await instance.usage())?.cpuSeconds ?? 0;
    this.recorders.get(node)!.instance = undefined;
    this.instances.delete(node);
    await instance.stop();
  }

  /** Every node's scrapes, in time order. */
  recordings() {
    return [...this.recorders.values()].flatMap((recorder) => recorder.recordings);
  }

  async usage(node: SimNode): Promise<ProcessUsage | undefined> {
    return await this.instances.get(node)?.usage();
  }
}

/** Runs every scenario for every tool on `cluster`; returns the report. */
export async function compare(
  cluster: SimCluster,
  tools: readonly ToolConfig[],
  options: CompareOptions,
): Promise<Record<string, unknown>> {
  const log = options.log ?? (() => {});
  const started = new Date().toISOString();
  const { intervalMs } = options;
  const discovery = new ServiceDiscovery(
    cluster.api.url,
    cluster.api.caPem,
    cluster.api.issueToken("prometheus"),
  );
  const fleets = tools.map((tool) => new Fleet(tool, cluster.api.issueToken(tool.name)));
  for (const fleet of fleets) {
    for (const node of cluster.nodes) {
      fleet.recorders.set(
        node,
        new Recorder(fleet.tool, node, { intervalMs, discovery, dnsServer: cluster.dns.address }),
      );
    }
  }
  const recorders = fleets.flatMap((fleet) => [...fleet.recorders.values()]);
  const runStartedAt = performance.now();
  try {
    log(`starting ${tools.map((tool) => tool.name).join(", ")} on ${cluster.nodes.length} nodes`);
    for (const node of cluster.nodes) cluster.applyPod(node, false);
    // A DaemonSet's pods start at different moments. Started together, every instance would
    // probe in step, all observers of a fault would share one phase, and a detection median
    // would rest on as many independent phases as there are trials.
    // Every start settles before a failure is thrown, so the cleanup below finds every instance.
    await settleAll(
      cluster.nodes.flatMap((node) =>
        fleets.map(async (fleet) => {
          await sleep(Math.random() * intervalMs);
          await fleet.startOn(node, cluster, options);
        })
      ),
    );
    for (const node of cluster.nodes) cluster.applyPod(node, true);
    await discovery.start();
    for (const recorder of recorders) recorder.start(Math.random() * intervalMs);
    const report = await scenarios(cluster, fleets, discovery, options, log);
    const minutes = (performance.now() - runStartedAt) / 60_000;
    for (const fleet of fleets) {
      const row = (report.tools as Record<string, Record<string, unknown>>)[fleet.tool.name]!;
      row.api_requests_per_minute_per_instance = round(
        cluster.api.requestsBy(fleet.tool.name) / cluster.nodes.length / minutes,
        1,
      );
    }
    return {
      started,
      machine: `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores`,
      nodes: cluster.nodes.length,
      interval_ms: intervalMs,
      timeout_ms: options.timeoutMs,
      ...report,
    };
  } finally {
    await Promise.all(recorders.map((recorder) => recorder.stop()));
    await discovery.stop();
    await Promise.all(
      fleets.flatMap((fleet) => cluster.nodes.map((node) => fleet.stopOn(node))),
    );
  }
}

async function scenarios(
  cluster: SimCluster,
  fleets: readonly Fleet[],
  discovery: ServiceDiscovery,
  options: CompareOptions,
  log: (line: string) => void,
): Promise<Record<string, unknown>> {
  const { intervalMs, timeoutMs } = options;
  const [a] = cluster.nodes as [SimNode];
  const rows = new Map(fleets.map((fleet) => [fleet, {} as Record<string, unknown>]));
  const referencePort = fleets[0]!.tool.port;
  await sleep(3 * intervalMs);

  // Accuracy, and errors counted on links that are only slow (false alarms).
  const accuracy: Record<string, unknown>[] = [];
  // Every step's probes and reference handshakes as excess over that step's reference median:
  // pooled, a p99 rests on 2,000 values. A histogram's probes are not known one by one.
  const referenceExcess: number[] = [];
  const toolExcess = new Map<Fleet, number[] | undefined>(fleets.map((fleet) => [fleet, []]));
  // Bootstrap intervals take seconds of CPU; worked out after the last scenario.
  const intervals: Array<() => void> = [];
  const contests: Contest[] = [];
  const contestOf = (figure: string) => {
    let contest = contests.find((candidate) => candidate.figure === figure);
    if (!contest) {
      contest = { figure, statistic: "mean", values: new Map() };
      contests.push(contest);
    }
    return contest;
  };
  const steadyFrom = performance.now();
  const cpuBefore = await cpuSeconds(fleets, cluster.nodes);
  for (const oneWayMs of options.delaysMs) {
    log(`accuracy: ${oneWayMs} ms one way`);
    await cluster.setAllLinks({ delay_ms: oneWayMs });
    await sleep(2 * intervalMs);
    // The reference runs beside the tools, node to node, as often as each tool probes a peer,
    // so both sides see the same machine at the same time and p99 rests on hundreds of handshakes.
    const peersEach = cluster.nodes.length - 1;
    const from = performance.now();
    const [, ...perNode] = await Promise.all([
      sleep(options.windowIntervals * intervalMs),
      ...cluster.nodes.map((node) =>
        cluster.reference(
          node,
          cluster.nodes.filter((peer) => peer !== node).map((peer) => peer.address),
          options.windowIntervals * peersEach,
          { port: referencePort, periodMs: intervalMs / peersEach },
        )
      ),
    ]);
    const to = performance.now();
    const reference = perNode.flat();
    const referenceMedian = medianOf(reference)!;
    const referenceP99 = quantile(reference, 0.99);
    const step: Record<string, unknown> = {
      one_way_ms: oneWayMs,
      reference_median_ms: round(referenceMedian),
      reference_p99_ms: round(referenceP99),
      reference_samples: reference.length,
    };
    referenceExcess.push(...reference.map((value) => value - referenceMedian));
    for (const fleet of fleets) {
      const recordings = fleet.recordings();
      const figures = latency(fleet.tool, recordings, { kind: "dial" }, from, to);
      const excess = figures?.values_ms?.map((value) => value - referenceMedian);
      toolExcess.set(fleet, excess && toolExcess.get(fleet)?.concat(excess));
      step[fleet.tool.name] = {
        median_ms: round(figures?.median_ms),
        p99_ms: round(figures?.p99_ms),
        samples: figures?.samples ?? 0,
        median_error_ms: round(figures && figures.median_ms - referenceMedian),
        p99_error_ms: round(figures && figures.p99_ms - referenceP99),
        errors_on_slow_links: errorCount(fleet.tool, recordings, { kind: "dial" }, from, to),
      };
    }
    accuracy.push(step);
  }
  const steadyTo = performance.now();
  const cpuAfter = await cpuSeconds(fleets, cluster.nodes);
  for (const fleet of fleets) {
    const row = rows.get(fleet)!;
    const steps = accuracy.map((step) => step[fleet.tool.name] as Record<string, number | null>);
    const errors = steps.map((step) => step.median_error_ms).filter((e) => e !== null);
    const p99Errors = steps.map((step) => step.p99_error_ms).filter((e) => e !== null);
    row.latency_median_error_ms_worst = round(maxAbs(errors as number[]));
    row.latency_p99_error_ms_worst = round(maxAbs(p99Errors as number[]));
    row.latency_samples_per_step_min = Math.min(...steps.map((step) => step.samples ?? 0));
    const excess = toolExcess.get(fleet);
    if (excess?.length) {
      row.latency_median_error_ms_pooled = round(medianOf(excess)! - medianOf(referenceExcess)!);
      row.latency_p99_error_ms_pooled = round(
        quantile(excess, 0.99) - quantile(referenceExcess, 0.99),
      );
      intervals.push(() => {
        row.latency_p99_error_ms_pooled_ci95 = p99ErrorInterval(excess, referenceExcess);
      });
    }
    row.errors_on_slow_links = steps.reduce(
      (sum, step) => sum + (step.errors_on_slow_links ?? 0),
      0,
    );
    const probes = probeCount(fleet.tool, fleet.recordings(), steadyFrom, steadyTo);
    row.steady_probes_per_second = round(probes / ((steadyTo - steadyFrom) / 1000), 1);
    row.steady_cpu_seconds_per_1000_probes = round(
      (cpuAfter.get(fleet)! - cpuBefore.get(fleet)!) / probes * 1000,
    );
    const rss = await Promise.all(cluster.nodes.map((node) => fleet.usage(node)));
    row.steady_rss_mib = round(medianOf(rss.map((usage) => (usage?.rssBytes ?? 0) / 2 ** 20)), 1);
    const times = fleet.recordings().filter((recording) =>
      recording.at > steadyFrom && recording.at <= steadyTo
    );
    const scrape = times.map((recording) => recording.at - recording.startedAt);
    row.steady_scrape_median_ms = round(medianOf(scrape));
    row.steady_scrape_p99_ms = round(quantile(scrape, 0.99));
  }
  for (const statistic of ["median", "p99"] as const) {
    contests.push({
      figure: "dial latency, every accuracy step pooled (excess over its reference median)",
      statistic,
      values: toolExcess,
    });
  }
  await cluster.setAllLinks({ delay_ms: 0 });

  // Does probing go on without scrapes?
  log("probing without scrapes");
  for (const fleet of fleets) {
    const recorder = fleet.recorders.get(a)!;
    const gapFrom = performance.now();
    recorder.paused = true;
    await sleep(5 * intervalMs);
    recorder.paused = false;
    await sleep(1.5 * intervalMs);
    // What ran while nobody asked: the counters a background tool keeps, beyond what an ordinary
    // scrape interval shows (a tool that probes when scraped shows that much), or the requests
    // made of a per-target tool.
    const probes = probesWhilePaused(
      fleet.tool,
      recorder.recordings,
      gapFrom,
      gapFrom + 5 * intervalMs,
    );
    rows.get(fleet)!.probes_while_unscraped_5_intervals = probes;
    rows.get(fleet)!.probing_depends_on_scraping = probes === 0 ? "yes" : "no";
  }

  // Detection: cut nodes, one after another, and the DNS server failing; every node observes.
  const bound = intervalMs + timeoutMs;
  const recorders = fleets.flatMap((fleet) => [...fleet.recorders.values()]);
  type Observation = { observer: SimNode; selection: Selection };
  type Trial = {
    fault: Fault;
    at: number;
    until: number;
    /** By then every probe that started before `until` has ended and been read. */
    settled: number;
    observations: Observation[];
  };
  const trials: Trial[] = [];
  const detect = async (
    fault: Fault,
    what: string,
    inject: () => void | Promise<void>,
    restore: () => void | Promise<void>,
    observations: Observation[],
  ) => {
    log(`detection: ${what}`);
    for (const recorder of recorders) recorder.pollMs = DETECTION_POLL_MS;
    // A random phase: trials of equal length would otherwise hit every schedule at the same point.
    // At least one interval, so the previous trial's last timeouts are over.
    await sleep((1 + Math.random()) * intervalMs);
    const at = performance.now();
    await inject();
    await sleep(bound + intervalMs);
    await restore();
    const until = performance.now();
    // Past the longest probe of any tool, so none started in this trial fails into the next.
    await sleep(
      longestProbeMs(fleets.map((fleet) => fleet.tool), timeoutMs) + 2 * DETECTION_POLL_MS,
    );
    const settled = performance.now();
    for (const recorder of recorders) recorder.pollMs = intervalMs;
    trials.push({ fault, at, until, settled, observations });
  };
  for (let trial = 0; trial < options.trials; trial++) {
    const cut = cluster.nodes[1 + (trial % (cluster.nodes.length - 1))]!;
    await detect(
      "cut",
      `${cut.name} cut off`,
      () => cluster.isolate(cut, "cut"),
      () => cluster.isolate(cut, {}),
      cluster.nodes.filter((node) => node !== cut).map((observer) => ({
        observer,
        selection: { kind: "dial", peerIp: cut.address },
      })),
    );
  }
  for (const fault of ["dns_silent", "dns_servfail"] as const) {
    for (let trial = 0; trial < options.trials; trial++) {
      await detect(
        fault,
        fault === "dns_silent" ? "DNS server silent" : "DNS server answers SERVFAIL",
        () => {
          cluster.dns.behaviour = () =>
            fault === "dns_silent" ? { silent: true } : { rcode: "SERVFAIL" };
        },
        () => {
          cluster.dns.behaviour = () => ({ a: ["10.96.0.1"] });
        },
        cluster.nodes.map((observer) => ({ observer, selection: { kind: "dns" } })),
      );
    }
  }
  // Reading the recordings is heavy; done between trials it would stall the scrape loops and tie
  // their phase to the next trial's start, so it waits until every trial has run.
  const cuts = trials.filter((trial) => trial.fault === "cut");
  const cutLengthIntervals = STATISTICS.mean(
    cuts.map(({ at, until }) => (until - at) / intervalMs),
  );
  const detected = (times: Array<number | undefined>) =>
    times.filter((time): time is number => time !== undefined);
  for (const fleet of fleets) {
    const row = rows.get(fleet)!;
    // A Prometheus scraping every interval. A per-target tool's scrape is its probe, so it sees
    // what the tool shows; a background tool waits for the next scrape. How long is fixed by the
    // offset between an instance's probe and its scrape, so an offset drawn once per instance would
    // make a mean of five draws; drawn for each observation, the mean is over offsets as a fleet's
    // many instances have them.
    for (const fault of FAULTS) {
      const ofFault = trials.filter((trial) => trial.fault === fault);
      const shown = ofFault.flatMap(({ at, until, observations }) =>
        observations.map(({ observer, selection }) => {
          const ms = detectionMs(
            fleet.tool,
            fleet.recorders.get(observer)!.recordings,
            selection,
            at,
            until,
          );
          return { at, ms };
        })
      );
      for (const view of ["exporter", "prometheus"] as const) {
        const times = shown.map(({ at, ms }) =>
          ms === undefined || view === "exporter" || fleet.tool.scrape.mode === "per_target"
            ? ms
            : firstScrapeFrom(at + ms, intervalMs, Math.random() * intervalMs) - at
        );
        const seen = detected(times);
        const mean = STATISTICS.mean(seen);
        const variance = seen.reduce((sum, time) => sum + (time - mean) ** 2, 0) /
          (seen.length - 1);
        const key = view === "exporter" ? `${fault}_detection` : `${fault}_detection_prometheus`;
        if (view === "exporter") {
          row[`${fault}_observations`] = times.length;
          row[`${key}_median_ms`] = round(medianOf(seen), 0);
          row[`${key}_max_ms`] = seen.length ? round(Math.max(...seen), 0) : null;
          // Every observation, for the JSON: a median hides the shape.
          row[`${key}_all_ms`] = times.map((time) => round(time, 0));
        }
        row[`${key}_mean_ms`] = round(mean, 0);
        // Observations are independent (every instance and scraper starts at its own phase).
        row[`${key}_mean_ci95_ms`] = round(1.96 * Math.sqrt(variance / seen.length), 0);
        row[`${key}_missed`] = times.length - seen.length;
        contestOf(`${FAULT_NAMES[fault]}: detection${view === "exporter" ? "" : " via Prometheus"}`)
          .values.set(fleet, seen);
      }
    }
    // Errors counted for peers that were never cut.
    let falseAlarms = 0;
    for (const { at, until, observations } of cuts) {
      for (const { observer } of observations) {
        for (const { observer: peer } of observations) {
          if (peer === observer) continue;
          falseAlarms += errorCount(
            fleet.tool,
            fleet.recorders.get(observer)!.recordings,
            { kind: "dial", peerIp: peer.address },
            at,
            until,
          );
        }
      }
    }
    row.cut_false_alarms_on_healthy_peers = falseAlarms;
    // Failures counted honestly: every probe of the cut peer that started during the cut fails,
    // about one per interval of the cut.
    const counted = cuts.flatMap(({ at, settled, observations }) =>
      observations.map(({ observer, selection }) =>
        errorCount(fleet.tool, fleet.recorders.get(observer)!.recordings, selection, at, settled)
      )
    );
    row.cut_dial_errors_per_observation_mean = round(STATISTICS.mean(counted), 2);
    row.cut_length_intervals_mean = round(cutLengthIntervals, 2);
    if (fleet.tool.scrape.mode === "background") {
      // How often the scraper actually got an answer while it meant to poll: the measurement's grain.
      const gaps = [...fleet.recorders.values()].flatMap((recorder) =>
        recorder.recordings.flatMap((recording, index) => {
          const previous = recorder.recordings[index - 1];
          const inside = trials.some(({ at, until }) =>
            previous !== undefined && previous.at > at && recording.at <= until
          );
          return inside ? [recording.at - previous!.at] : [];
        })
      );
      row.detection_poll_gap_median_ms = round(medianOf(gaps), 1);
      row.detection_poll_gap_p99_ms = round(quantile(gaps, 0.99), 1);
    }
  }

  // Rolling restart: every pod replaced (new name, new IP), links healthy.
  log("rolling restart of every pod");
  await cluster.setAllLinks({ delay_ms: 1 });
  await sleep(2 * intervalMs);
  const oldAddresses = cluster.nodes.map((node) => node.address);
  const rolloutFrom = performance.now();
  for (const node of cluster.nodes) {
    await cluster.replacePod(node, {
      beforeStop: () => Promise.resolve(),
      stop: async () => void await Promise.all(fleets.map((fleet) => fleet.stopOn(node))),
      start: async () =>
        void await settleAll(fleets.map((fleet) => fleet.startOn(node, cluster, options))),
    });
    await sleep(intervalMs);
  }
  // The last pod's peers get interval + timeout to notice, Prometheus' discovery its 5 s.
  await sleep(Math.max(2 * bound, 5_000 + intervalMs));
  const rolloutTo = performance.now();
  for (const fleet of fleets) {
    const row = rows.get(fleet)!;
    row.rolling_restart_dial_errors = errorCount(
      fleet.tool,
      fleet.recordings(),
      { kind: "dial" },
      rolloutFrom,
      rolloutTo,
    );
    if (fleet.tool.scrape.mode === "background" && fleet.tool.dial.target) {
      const label = fleet.tool.dial.target.label;
      const oldValues = oldAddresses.map((address) =>
        peerLabels(fleet.tool, { kind: "dial", peerIp: address })[label]
      );
      const last = [...fleet.recorders.values()].map((recorder) => recorder.recordings.at(-1));
      row.series_left_for_old_pod_ips = last.flatMap((recording) => recording?.samples ?? [])
        .filter((sample) => oldValues.includes(sample.labels[label])).length;
    } else {
      row.series_left_for_old_pod_ips = 0;
    }
  }

  // Load: node-0's instance of every tool probes every pod of a crowd, all at the same time, so
  // each tool's figures are paired in time with the others' and with one reference.
  let load: Record<string, unknown> | undefined;
  if (options.crowd > 0) {
    log(`load: ${options.crowd} more pods, 20 ms links, every tool at once`);
    await cluster.setDefaultLink({ delay_ms: 20 });
    await cluster.setAllLinks({ delay_ms: 20 });
    await cluster.startCrowd([...new Set(fleets.map((fleet) => fleet.tool.port))]);
    await discovery.refresh();
    load = { peers: options.crowd + cluster.nodes.length - 1 };
    const background = (fleet: Fleet) => fleet.tool.scrape.mode === "background";
    await Promise.all(fleets.map(async (fleet) => {
      if (background(fleet)) {
        await fleet.stopOn(a);
        await fleet.startOn(a, cluster, options, fleet.tool.load_args ?? []);
      } else {
        fleet.recorders.get(a)!.loaded = true;
      }
    }));
    await sleep(5 * intervalMs);
    // A window scraped as Prometheus would, then one with a scraper pulling each tool back to back.
    const window = async () => {
      // The reference runs beside the tools, from the same node to the same peers.
      const peers = discovery.pods.filter((pod) => pod.node !== a.name).map((pod) => pod.ip);
      const before = new Map(
        await Promise.all(fleets.map(async (fleet) => [fleet, await fleet.usage(a)] as const)),
      );
      const from = performance.now();
      const [, reference] = await Promise.all([
        sleep(options.windowIntervals * intervalMs),
        cluster.reference(a, peers, options.windowIntervals * LOAD_REFERENCE_PER_INTERVAL, {
          port: referencePort,
          periodMs: intervalMs / LOAD_REFERENCE_PER_INTERVAL,
        }),
      ]);
      const to = performance.now();
      const referenceMedian = medianOf(reference)!;
      return new Map(
        await Promise.all(fleets.map(async (fleet) => {
          const recordings = fleet.recorders.get(a)!.recordings;
          const figures = latency(fleet.tool, recordings, { kind: "dial" }, from, to);
          const after = await fleet.usage(a);
          return [fleet, {
            from,
            to,
            recordings,
            before: before.get(fleet),
            after,
            values: figures?.values_ms,
            excess: figures?.values_ms?.map((value) => value - referenceMedian),
            reference,
            samples: figures?.samples ?? 0,
            medianError: round(figures && figures.median_ms - referenceMedian),
            p99Error: round(figures && figures.p99_ms - quantile(reference, 0.99)),
          }] as const;
        })),
      );
    };
    const scrapedContests = loadContests("load: dial latency (excess over the reference median)");
    const busyContests = loadContests(
      "load + busy scraper: dial latency (excess over the reference median)",
    );
    contests.push(...scrapedContests, ...busyContests);

    log("load: scraped as Prometheus would");
    const scraped = await window();
    for (const fleet of fleets) {
      const row = rows.get(fleet)!;
      const result = scraped.get(fleet)!;
      const probes = probeCount(fleet.tool, result.recordings, result.from, result.to);
      const times = scrapeTimes(result.recordings, result.from, result.to);
      row.load_probes_per_second = round(probes / ((result.to - result.from) / 1000), 1);
      row.load_cpu_seconds_per_1000_probes = round(
        ((result.after?.cpuSeconds ?? 0) - (result.before?.cpuSeconds ?? 0)) / probes * 1000,
      );
      row.load_rss_mib = round((result.after?.rssBytes ?? 0) / 2 ** 20, 1);
      row.load_latency_median_error_ms = result.medianError;
      row.load_latency_p99_error_ms = result.p99Error;
      row.load_latency_samples = result.samples;
      row.load_reference_samples = result.reference.length;
      row.load_scrape_median_ms = round(medianOf(times));
      row.load_scrape_p99_ms = round(quantile(times, 0.99));
      for (const contest of scrapedContests) contest.values.set(fleet, result.excess);
      if (result.values) {
        const values = result.values;
        intervals.push(() => {
          row.load_latency_p99_error_ms_ci95 = p99ErrorInterval(values, result.reference);
        });
      }
    }

    log("load: with busy scrapers");
    let scraping = true;
    const busyTimes = new Map<Fleet, number[]>(fleets.map((fleet) => [fleet, []]));
    const busy = fleets.map(async (fleet) => {
      while (scraping) {
        const startedAt = performance.now();
        try {
          const url = `${fleet.instances.get(a)!.url}${fleet.tool.scrape.path}`;
          const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
          await response.text();
          busyTimes.get(fleet)!.push(performance.now() - startedAt);
        } catch { /* counted by its absence */ }
      }
    });
    const hammered = await window();
    scraping = false;
    await Promise.all(busy);
    for (const fleet of fleets) {
      const row = rows.get(fleet)!;
      const result = hammered.get(fleet)!;
      row.busy_latency_median_error_ms = result.medianError;
      row.busy_latency_p99_error_ms = result.p99Error;
      row.busy_latency_samples = result.samples;
      row.busy_scrapes_per_second = round(
        busyTimes.get(fleet)!.length / ((result.to - result.from) / 1000),
        1,
      );
      row.busy_scrape_median_ms = round(medianOf(busyTimes.get(fleet)!));
      row.busy_rss_mib = round((result.after?.rssBytes ?? 0) / 2 ** 20, 1);
      for (const contest of busyContests) contest.values.set(fleet, result.excess);
      if (result.values) {
        const values = result.values;
        intervals.push(() => {
          row.busy_latency_p99_error_ms_ci95 = p99ErrorInterval(values, result.reference);
        });
      }
    }
    await Promise.all(fleets.map(async (fleet) => {
      if (background(fleet)) {
        await fleet.stopOn(a);
        await fleet.startOn(a, cluster, options);
      } else {
        fleet.recorders.get(a)!.loaded = false;
      }
    }));
  }

  for (const interval of intervals) interval();
  return {
    accuracy,
    ...(load ? { load } : {}),
    head_to_head: headToHead(fleets, contests),
    tools: Object.fromEntries(fleets.map((fleet) => [fleet.tool.name, rows.get(fleet)!])),
  };
}

/** The faults whose detection is timed; row keys start with these. */
const FAULTS = ["cut", "dns_silent", "dns_servfail"] as const;
type Fault = typeof FAULTS[number];
const FAULT_NAMES: Record<Fault, string> = {
  cut: "cut node",
  dns_silent: "DNS server silent",
  dns_servfail: "DNS SERVFAIL",
};

/** A figure on which every tool's raw values are compared with the first tool's. */
interface Contest {
  readonly figure: string;
  readonly statistic: "median" | "p99" | "mean";
  /** Milliseconds; undefined for a tool whose probes are not known one by one. */
  readonly values: Map<Fleet, readonly number[] | undefined>;
}

/** Median and p99 contests of one load window, filled in tool by tool. */
function loadContests(figure: string): Contest[] {
  return (["median", "p99"] as const).map((statistic) => ({
    figure,
    statistic,
    values: new Map(),
  }));
}

const STATISTICS = {
  median: (values: readonly number[]) => quantile(values, 0.5),
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
function headToHead(fleets: readonly Fleet[], contests: readonly Contest[]) {
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
function p99ErrorInterval(tool: readonly number[], reference: readonly number[]): string {
  const [low, high] = bootstrapInterval(tool, reference, STATISTICS.p99);
  return `[${round(low, 2)}, ${round(high, 2)}]`;
}

function maxAbs(values: readonly number[]): number | undefined {
  return values.length
    ? values.reduce((worst, v) => Math.abs(v) > Math.abs(worst) ? v : worst)
    : undefined;
}

/** CPU seconds of every fleet so far: live processes and retired ones. */
async function cpuSeconds(fleets: readonly Fleet[], nodes: readonly SimNode[]) {
  const totals = new Map<Fleet, number>();
  for (const fleet of fleets) {
    const usages = await Promise.all(nodes.map((node) => fleet.usage(node)));
    totals.set(
      fleet,
      fleet.retiredCpuSeconds + usages.reduce((sum, usage) => sum + (usage?.cpuSeconds ?? 0), 0),
    );
  }
  return totals;
}

/** Rows of the comparison table: report key, what it means. */
const FIGURES: ReadonlyArray<[string, string]> = [
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
];

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

async function machine(): Promise<string> {
  const output = await new Deno.Command("sh", {
    args: ["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; grep MemTotal /proc/meminfo"],
    stdout: "piped",
  }).output();
  const [cpu, memory] = new TextDecoder().decode(output.stdout).trim().split("\n");
  const gib = Number(/(\d+)/.exec(memory ?? "")?.[1] ?? 0) / 2 ** 20;
  return `${cpu?.trim()}, ${navigator.hardwareConcurrency} cores, ${Math.round(gib)} GiB`;
}

if (import.meta.main) {
  let tools: ToolConfig[];
  let nodes: number;
  let crowd: number;
  let out: string;
  let documented: boolean;
  try {
    const { values: args } = parseArgs({
      args: Deno.args,
      options: {
        nodes: { type: "string", default: "5" },
        crowd: { type: "string", default: "500" },
        config: { type: "string", default: new URL("./compare.yaml", import.meta.url).pathname },
        out: { type: "string", default: "compare-report" },
      },
    });
    nodes = Number(args.nodes);
    crowd = Number(args.crowd);
    out = args.out!;
    documented = args.nodes === "5" && args.crowd === "500" &&
      args.config === new URL("./compare.yaml", import.meta.url).pathname;
    // A cut node needs at least two others: observers, and healthy peers to count false alarms on.
    if (!Number.isInteger(nodes) || nodes < 3 || nodes > 200) {
      throw new Error(`Cannot compare: --nodes must be 3 to 200, current value is ${args.nodes}`);
    }
    if (!Number.isInteger(crowd) || crowd < 0 || crowd > 1000) {
      throw new Error(`Cannot compare: --crowd must be 0 to 1000, current value is ${args.crowd}`);
    }
    tools = await loadTools(args.config!);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(2);
  }
  const intervalMs = 1_000;
  const timeoutMs = 500;
  const cluster = await createForCommandLine({ nodes, intervalMs, timeoutMs, crowd });
  try {
    const report = await compare(cluster, tools, {
      intervalMs,
      timeoutMs,
      delaysMs: [0, 1, 5, 20, 100],
      windowIntervals: 20,
      trials: 24,
      crowd,
      log: (line) => console.error(line),
    });
    report.machine = await machine();
    await Deno.mkdir(out, { recursive: true });
    await Deno.writeTextFile(`${out}/report.json`, JSON.stringify(report, null, 2) + "\n");
    await Deno.writeTextFile(`${out}/report.md`, markdown(report));
    console.log(markdown(report));
    // The shipped configuration at the documented size rewrites the document's results.
    if (documented) {
      console.error(
        `wrote ${await rewriteDocsBlock(
          "comparison.md",
          "compare",
          "deno task compare",
          markdown(report),
        )}`,
      );
    }
  } catch (error) {
    console.error(error);
    await exitAfterTeardown(cluster, 1);
  }
  await exitAfterTeardown(cluster, 0);
}
