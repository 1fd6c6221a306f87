/**
 * The phases of a comparison run, one after another on the same cluster:
 * accuracy, probing while unscraped, detection, a rolling restart, and load.
 * Each writes its figures into the tools' typed rows.
 * @module
 */

import { settleAll } from "../helpers/settle.ts";
import type { SimCluster, SimNode } from "./cluster.ts";
import { type CompareOptions, type Fleet } from "./fleet.ts";
import {
  detectionMs,
  errorCount,
  firstScrapeFrom,
  latency,
  peerLabels,
  probeCount,
  probesWhilePaused,
  quantile,
  scrapeHeadTimes,
  scrapeTimes,
  type Selection,
  type ServiceDiscovery,
} from "./recording.ts";
import {
  type Contest,
  type DetectionView,
  type Fault,
  FAULT_NAMES,
  FAULTS,
  headToHead,
  loadContests,
  maxAbs,
  medianOf,
  p99ErrorInterval,
  round,
  STATISTICS,
  type ToolRow,
} from "./compare_report.ts";
import { longestProbeMs } from "./tools.ts";

/** How often background tools are scraped while a detection trial runs. */
const DETECTION_POLL_MS = 50;
/** Reference handshakes per interval under load: p99 of a 20-interval window rests on 400. */
const LOAD_REFERENCE_PER_INTERVAL = 20;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What every phase of a run shares: the cluster, the tools, and the figures so far. */
interface Run {
  readonly cluster: SimCluster;
  readonly fleets: readonly Fleet[];
  readonly discovery: ServiceDiscovery;
  readonly options: CompareOptions;
  readonly log: (line: string) => void;
  /** The node whose instances are paused and loaded. */
  readonly a: SimNode;
  /** The port the reference dials: the first tool's. */
  readonly referencePort: number;
  /** Each tool's figures, written by the phases. */
  readonly rows: Map<Fleet, ToolRow>;
  /** Figures on which the tools' raw values are compared head to head. */
  readonly contests: Contest[];
  contestOf(figure: string): Contest;
  /** Bootstrap intervals take seconds of CPU: worked out after the last phase. */
  readonly intervals: Array<() => void>;
}

/** Runs every phase, one after another, and returns the report's figures. */
export async function scenarios(
  cluster: SimCluster,
  fleets: readonly Fleet[],
  discovery: ServiceDiscovery,
  options: CompareOptions,
  log: (line: string) => void,
): Promise<Record<string, unknown>> {
  const contests: Contest[] = [];
  const run: Run = {
    cluster,
    fleets,
    discovery,
    options,
    log,
    a: cluster.nodes[0]!,
    referencePort: fleets[0]!.tool.port,
    rows: new Map(fleets.map((fleet) => [fleet, {}])),
    contests,
    contestOf(figure) {
      let contest = contests.find((candidate) => candidate.figure === figure);
      if (!contest) {
        contest = { figure, statistic: "mean", values: new Map() };
        contests.push(contest);
      }
      return contest;
    },
    intervals: [],
  };
  await sleep(3 * options.intervalMs);
  const accuracy = await accuracyPhase(run);
  await unscrapedPhase(run);
  await detectionPhase(run);
  await rollingRestartPhase(run);
  await hiddenFaultsPhase(run);
  const load = await loadPhase(run);
  for (const interval of run.intervals) interval();
  return {
    accuracy,
    ...(load ? { load } : {}),
    head_to_head: headToHead(fleets, contests),
    tools: Object.fromEntries(fleets.map((fleet) => [fleet.tool.name, run.rows.get(fleet)!])),
  };
}

/** Accuracy over every delay step, steady memory, CPU and scrape time, and errors on links that are only slow (false alarms). Returns the steps. */
async function accuracyPhase(run: Run): Promise<Record<string, unknown>[]> {
  const { cluster, fleets, options, log, rows, contests, intervals, referencePort } = run;
  const { intervalMs } = run.options;
  // Accuracy, and errors counted on links that are only slow (false alarms).
  const accuracy: Record<string, unknown>[] = [];
  // Every step's probes and reference handshakes as excess over that step's reference median:
  // pooled, a p99 rests on 2,000 values. A histogram's probes are not known one by one.
  const referenceExcess: number[] = [];
  const toolExcess = new Map<Fleet, number[] | undefined>(fleets.map((fleet) => [fleet, []]));
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
          // The truth is the network's round trip as the kernel measured it (issue #30): a tool
          // timing its own userspace too reads above it, one reading the kernel's reads it.
          { port: referencePort, periodMs: intervalMs / peersEach, clock: "kernel" },
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
  return accuracy;
}

/** Whether probing goes on while nobody scrapes. */
async function unscrapedPhase(run: Run): Promise<void> {
  const { fleets, log, a, rows } = run;
  const { intervalMs } = run.options;
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
}

/** Detection of a cut node, a silent DNS server and SERVFAIL, as each tool shows it and via Prometheus; false alarms on healthy peers; failures counted for the cut peer. */
async function detectionPhase(run: Run): Promise<void> {
  const { cluster, fleets, options, log, rows, contestOf } = run;
  const { intervalMs, timeoutMs } = run.options;
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
        const key: DetectionView = view === "exporter"
          ? `${fault}_detection`
          : `${fault}_detection_prometheus`;
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
}

/** A rolling restart of every pod on healthy links: dial errors counted (false alarms) and series left for old pod IPs. */
async function rollingRestartPhase(run: Run): Promise<void> {
  const { cluster, fleets, options, log, rows } = run;
  const { intervalMs, timeoutMs } = run.options;
  const bound = intervalMs + timeoutMs;
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
}

/**
 * Faults a TCP handshake hides, given to every tool alike on one link (node-0
 * to node-1): 10% of the packets from node-0 to node-1 lost, then an MTU black
 * hole both ways (every packet over 1,400 bytes dropped, no ICMP back). What
 * each tool shows for the pair: dials failed per 100 (every tool: a per-target
 * tool's probes of node-1 in the window; a background tool dials each peer once
 * an interval, so its window's intervals), and where a tool echoes
 * (net-exporter's echo collector) the share of small and of full-size echoes
 * lost, read from its own counters.
 */
async function hiddenFaultsPhase(run: Run): Promise<void> {
  const { cluster, fleets, options, log, rows, a } = run;
  const b = cluster.nodes[1]!;
  const windowMs = options.windowIntervals * options.intervalMs;
  const faults: Array<{
    name: "loss_10" | "mtu_black_hole";
    apply: () => Promise<void>;
  }> = [
    { name: "loss_10", apply: () => cluster.setLink(a, b, { delay_ms: 1, loss: 0.1 }) },
    {
      name: "mtu_black_hole",
      apply: async () => {
        await cluster.setLink(a, b, { delay_ms: 1, max_size: 1_400 });
        await cluster.setLink(b, a, { delay_ms: 1, max_size: 1_400 });
      },
    },
  ];
  /** A tool's echo counters towards node-1, if it has any. */
  const echoes = async (fleet: Fleet) => {
    const instance = fleet.instances.get(a);
    if (!instance || fleet.tool.scrape.mode !== "background") return undefined;
    const text = await fetch(`${instance.url}${fleet.tool.scrape.path}`, {
      signal: AbortSignal.timeout(5_000),
    }).then((response) => response.text(), () => "");
    const sum = (name: string, size: string) =>
      text.split("\n").filter((line) =>
        line.startsWith(`${name}{`) && line.includes(`target_node="${b.name}"`) &&
        line.includes(`size="${size}"`)
      ).reduce((total, line) => total + Number(line.split(" ").at(-1)), 0);
    if (!text.includes("echo_packets_sent_total")) return undefined;
    return {
      smallSent: sum("echo_packets_sent_total", "small"),
      smallLost: sum("echo_packets_lost_total", "small"),
      fullSent: sum("echo_packets_sent_total", "full"),
      fullLost: sum("echo_packets_lost_total", "full"),
    };
  };
  for (const fault of faults) {
    log(`hidden faults: ${fault.name.replaceAll("_", " ")} between ${a.name} and ${b.name}`);
    await cluster.setAllLinks({ delay_ms: 1 });
    await fault.apply();
    await sleep(2 * options.intervalMs);
    const before = new Map(
      await Promise.all(fleets.map(async (f) => [f, await echoes(f)] as const)),
    );
    const from = performance.now();
    await sleep(windowMs);
    const to = performance.now();
    const after = new Map(
      await Promise.all(fleets.map(async (f) => [f, await echoes(f)] as const)),
    );
    for (const fleet of fleets) {
      const row = rows.get(fleet)!;
      const recordings = fleet.recorders.get(a)!.recordings;
      const selection = { kind: "dial", peerIp: b.address } as const;
      const errors = errorCount(fleet.tool, recordings, selection, from, to);
      const probes = fleet.tool.scrape.mode === "per_target"
        ? recordings.filter((recording) =>
          recording.kind === "dial" && recording.peer === b.address && recording.at > from &&
          recording.at <= to
        ).length
        : Math.max(errors, options.windowIntervals);
      row[`${fault.name}_dial_errors_per_100`] = round(errors / Math.max(1, probes) * 100, 1);
      const start = before.get(fleet);
      const end = after.get(fleet);
      const share = (lost: number, sent: number) => sent > 0 ? round(lost / sent, 3) : null;
      row[`${fault.name}_echo_small_lost`] = start && end
        ? share(end.smallLost - start.smallLost, end.smallSent - start.smallSent)
        : null;
      row[`${fault.name}_echo_full_lost`] = start && end
        ? share(end.fullLost - start.fullLost, end.fullSent - start.fullSent)
        : null;
    }
  }
  await cluster.setAllLinks({ delay_ms: 1 });
  await cluster.setLink(b, a, { delay_ms: 1 });
  await sleep(2 * options.intervalMs);
}

/** Load: node-0's instance of every tool probes every pod of a crowd, scraped as Prometheus would and then back to back. Returns the load summary, or undefined without a crowd. */
async function loadPhase(run: Run): Promise<Record<string, unknown> | undefined> {
  const { cluster, fleets, discovery, options, log, a, rows, contests, intervals, referencePort } =
    run;
  const { intervalMs } = run.options;
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
      const [, reference, roundTrips] = await Promise.all([
        sleep(options.windowIntervals * intervalMs),
        cluster.reference(a, peers, options.windowIntervals * LOAD_REFERENCE_PER_INTERVAL, {
          port: referencePort,
          periodMs: intervalMs / LOAD_REFERENCE_PER_INTERVAL,
          clock: "kernel",
        }),
        Promise.all(
          fleets.map((fleet) =>
            scraperRoundTrips(fleet.instances.get(a)!, options.windowIntervals, intervalMs)
          ),
        ),
      ]);
      const to = performance.now();
      const referenceMedian = medianOf(reference)!;
      return new Map(
        await Promise.all(fleets.map(async (fleet, index) => {
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
            roundTrips: roundTrips[index]!,
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
      row.load_scrape_head_median_ms = round(
        medianOf(scrapeHeadTimes(result.recordings, result.from, result.to)),
      );
      row.load_scrape_round_trip_ms = round(medianOf(result.roundTrips));
      // The tool's own time to answer: the head's arrival less the scraper's round trip to it.
      const head = row.load_scrape_head_median_ms;
      const roundTrip = row.load_scrape_round_trip_ms;
      row.load_scrape_own_time_ms = head === null || roundTrip === null
        ? null
        : round(head - roundTrip);
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
  return load;
}

/**
 * The scraper's round trip to an instance: a TCP connect from the harness to
 * its port once per interval (the handshake is the kernel's, so the tool adds
 * nothing). Under load the scraper's path has 20 ms links too, and no answer
 * of a scrape can come sooner than this.
 */
async function scraperRoundTrips(
  instance: { readonly address: string; readonly tool: { readonly port: number } },
  count: number,
  intervalMs: number,
): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const startedAt = performance.now();
    try {
      const conn = await Deno.connect({ hostname: instance.address, port: instance.tool.port });
      times.push(performance.now() - startedAt);
      conn.close();
    } catch { /* counted by its absence */ }
    await sleep(Math.max(0, intervalMs - (performance.now() - startedAt)));
  }
  return times;
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
