/**
 * `deno task sim`: the full simulation as a benchmark. Builds the simulated
 * cluster, runs every scenario, writes report.json and report.md.
 *
 * Usage (as root): deno task sim [--nodes=5] [--out=sim-report]
 * Every namespace, TUN device and process it makes is removed at the end,
 * also on failure and on Ctrl-C.
 */

import { parseArgs } from "node:util";
import {
  createForCommandLine,
  exitAfterTeardown,
  type SimCluster,
  type SimNode,
} from "./cluster.ts";
import {
  DialErrorTally,
  exporterSamples,
  median,
  quantile,
  scrape,
  statuses,
  timeUntilDialError,
} from "./measure.ts";
import { rewriteDocsBlock } from "../helpers/docs.ts";
import { waitFor } from "../helpers/exporter_process.ts";

const DEFAULT_NODES = "5";
const DEFAULT_CROWD = "500";
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    nodes: { type: "string", default: DEFAULT_NODES },
    out: { type: "string", default: "sim-report" },
    crowd: { type: "string", default: DEFAULT_CROWD },
  },
});
const INTERVAL_MS = 1_000;
const TIMEOUT_MS = 500;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (value: number | null | undefined) =>
  value === undefined || value === null ? null : Math.round(value * 1000) / 1000;

interface AccuracyRow {
  injected_one_way_ms: number;
  injected_rtt_ms: number;
  exporter_median_ms: number | null;
  exporter_p99_ms: number | null;
  exporter_histogram_mean_ms: number | null;
  reference_median_ms: number | null;
  reference_p99_ms: number | null;
  median_error_vs_reference_ms: number | null;
  samples: number;
}

async function accuracy(
  cluster: SimCluster,
  a: SimNode,
  b: SimNode,
  oneWayMs: number,
): Promise<AccuracyRow> {
  await cluster.setAllLinks({ delay_ms: oneWayMs });
  await sleep(2 * INTERVAL_MS);
  const before = await scrape(a);
  const exporter = await exporterSamples(a, b, 10, INTERVAL_MS);
  const after = await scrape(a);
  const reference = await cluster.reference(a, [b.address], 20);
  const delta = (name: string) =>
    after.value(name, { target_node: b.name }) - before.value(name, { target_node: b.name });
  const count = delta("network_latency_seconds_count");
  return {
    injected_one_way_ms: oneWayMs,
    injected_rtt_ms: 2 * oneWayMs,
    exporter_median_ms: round(median(exporter)),
    exporter_p99_ms: round(quantile(exporter, 0.99)),
    exporter_histogram_mean_ms: count > 0
      ? round(delta("network_latency_seconds_sum") / count * 1000)
      : null,
    reference_median_ms: round(median(reference)),
    reference_p99_ms: round(quantile(reference, 0.99)),
    median_error_vs_reference_ms: round(median(exporter) - median(reference)),
    samples: exporter.length,
  };
}

async function dnsDetection(
  cluster: SimCluster,
  node: SimNode,
  reason: "timeout" | "servfail",
): Promise<number | null> {
  const errors = async () =>
    (await scrape(node)).samples("dns_resolve_error_total", { reason }).reduce(
      (sum, sample) => sum + sample.value,
      0,
    );
  const before = await errors();
  cluster.dns.behaviour = () => reason === "timeout" ? { silent: true } : { rcode: "SERVFAIL" };
  const startedAt = performance.now();
  let detected: number | null = null;
  while (performance.now() - startedAt < 5 * INTERVAL_MS) {
    if (await errors() > before) {
      detected = performance.now() - startedAt;
      break;
    }
    await sleep(50);
  }
  cluster.dns.behaviour = () => ({ a: ["10.96.0.1"] });
  return round(detected);
}

async function loss(cluster: SimCluster, a: SimNode, b: SimNode, fraction: number) {
  await cluster.setAllLinks({ delay_ms: 5 });
  await cluster.setLink(a, b, { delay_ms: 5, loss: fraction });
  await cluster.setLink(b, a, { delay_ms: 5, loss: fraction });
  const before = await scrape(a);
  const seconds = new Set<number>();
  const startedAt = performance.now();
  while (performance.now() - startedAt < 30 * INTERVAL_MS) {
    const row = (await statuses(a)).find((status) =>
      status.collector === "network" && status.labels.target_node === b.name
    );
    if (row?.state === "up" && row.seconds !== undefined) seconds.add(row.seconds * 1000);
    await sleep(INTERVAL_MS / 4);
  }
  const after = await scrape(a);
  const delta = (name: string, labels: Record<string, string> = {}) =>
    after.samples(name, { target_node: b.name, ...labels }).reduce(
      (sum, sample) => sum + sample.value,
      0,
    ) -
    before.samples(name, { target_node: b.name, ...labels }).reduce(
      (sum, sample) => sum + sample.value,
      0,
    );
  const ok = delta("network_latency_seconds_count");
  const timeouts = delta("network_dial_error_total", { reason: "timeout" });
  const latencies = [...seconds];
  const echoSent = delta("echo_packets_sent_total", { size: "small" });
  const echoLost = delta("echo_packets_lost_total", { size: "small" });
  return {
    loss: fraction,
    probes: ok + timeouts,
    succeeded: ok,
    timeouts,
    timeout_share: round(timeouts / Math.max(1, ok + timeouts)),
    success_median_ms: latencies.length ? round(median(latencies)) : null,
    success_max_ms: latencies.length ? round(Math.max(...latencies)) : null,
    // Loss both ways: an echo is lost when its request or its reply is, 1 − (1 − loss)².
    echo_sent: echoSent,
    echo_lost_share: echoSent ? round(echoLost / echoSent) : null,
    echo_expected_share: round(1 - (1 - fraction) ** 2),
  };
}

/**
 * An MTU black hole between `a` and `b`: every packet over 1,400 bytes dropped
 * without an ICMP message, on tun devices of MTU 1,500. Full-size echoes vanish,
 * small ones and TCP handshakes pass.
 */
async function blackHole(cluster: SimCluster, a: SimNode, b: SimNode) {
  await cluster.setAllLinks({ delay_ms: 1 });
  await cluster.setLink(a, b, { delay_ms: 1, max_size: 1_400 });
  await cluster.setLink(b, a, { delay_ms: 1, max_size: 1_400 });
  await sleep(2 * INTERVAL_MS); // rounds in flight when the link changed
  const before = await scrape(a);
  await sleep(20 * INTERVAL_MS);
  const after = await scrape(a);
  const delta = (name: string, labels: Record<string, string> = {}) =>
    after.samples(name, { target_node: b.name, ...labels }).reduce((sum, x) => sum + x.value, 0) -
    before.samples(name, { target_node: b.name, ...labels }).reduce((sum, x) => sum + x.value, 0);
  const share = (lost: number, sent: number) => sent ? round(lost / sent) : null;
  const status = (await statuses(a)).find((row) =>
    row.collector === "echo" && row.labels.target_node === b.name
  );
  await cluster.setAllLinks({ delay_ms: 1 });
  return {
    max_packet_bytes: 1_400,
    full_size_bytes: after.value("echo_full_size_bytes", { target_node: b.name }),
    full_lost_share: share(
      delta("echo_packets_lost_total", { size: "full" }),
      delta("echo_packets_sent_total", { size: "full" }),
    ),
    small_lost_share: share(
      delta("echo_packets_lost_total", { size: "small" }),
      delta("echo_packets_sent_total", { size: "small" }),
    ),
    handshakes: delta("network_latency_seconds_count"),
    dial_errors: delta("network_dial_error_total"),
    echo_state: status ? `${status.state}${status.reason ? ` (${status.reason})` : ""}` : null,
  };
}

async function main(cluster: SimCluster, nodes: number, crowd: number): Promise<void> {
  const started = new Date().toISOString();
  // Echo rounds as often as the probes, so the loss and black-hole phases hold enough of them.
  await cluster.startExporters([
    `--echo.interval=${INTERVAL_MS}ms`,
    `--echo.timeout=${TIMEOUT_MS}ms`,
  ]);
  const [a, b] = cluster.nodes as [SimNode, SimNode];
  const last = cluster.nodes[nodes - 1]!;
  for (const node of cluster.nodes) {
    await waitFor(
      async () =>
        (await scrape(node)).value("net_exporter_peers", { state: "selected" }) === nodes - 1,
      15_000,
      `${node.name} ready`,
    );
  }

  console.error("floor: the emulator with no impairment");
  const floorSamples = await cluster.reference(a, [b.address], 40);
  const floor = {
    median_ms: round(median(floorSamples)),
    p99_ms: round(quantile(floorSamples, 0.99)),
  };

  const accuracyRows: AccuracyRow[] = [];
  for (const oneWayMs of [0, 1, 5, 20, 100]) {
    console.error(`accuracy: ${oneWayMs} ms one way`);
    accuracyRows.push(await accuracy(cluster, a, b, oneWayMs));
  }
  await cluster.setAllLinks({ delay_ms: 0 });

  console.error("detection: cut node");
  await sleep(2 * INTERVAL_MS);
  await cluster.isolate(last, "cut");
  const [peerDetects, cutNodeDetects] = await Promise.all([
    timeUntilDialError(a, last, "timeout", 5 * INTERVAL_MS),
    timeUntilDialError(last, a, "timeout", 5 * INTERVAL_MS),
  ]);
  await cluster.isolate(last, {});

  console.error("detection: DNS server silent, then SERVFAIL");
  await sleep(2 * INTERVAL_MS);
  const dnsSilent = await dnsDetection(cluster, a, "timeout");
  await sleep(2 * INTERVAL_MS);
  const dnsServfail = await dnsDetection(cluster, a, "servfail");

  const lossRows = [];
  for (const fraction of [0.01, 0.05, 0.2]) {
    console.error(`loss: ${fraction * 100}% on ${a.name} <-> ${b.name}`);
    lossRows.push(await loss(cluster, a, b, fraction));
  }

  console.error(`MTU black hole on ${a.name} <-> ${b.name}`);
  const mtu = await blackHole(cluster, a, b);

  console.error("rolling restart of every exporter, healthy links");
  await cluster.setAllLinks({ delay_ms: 1 });
  await sleep(2 * INTERVAL_MS);
  const oldAddresses = cluster.nodes.map((node) => node.address);
  const tally = new DialErrorTally();
  await tally.sample(cluster.nodes);
  tally.counted = 0; // count from here on
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await tally.sample(cluster.nodes);
      await sleep(INTERVAL_MS / 4);
    }
  })();
  const rolloutStartedAt = performance.now();
  for (const node of cluster.nodes) {
    await cluster.restart(node, () => tally.sample(cluster.nodes));
    for (const peer of cluster.nodes) {
      await waitFor(
        async () =>
          (await scrape(peer)).value("net_exporter_peers", { state: "selected" }) === nodes - 1,
        15_000,
        `${peer.name} sees every peer again`,
      );
    }
  }
  const rolloutMs = performance.now() - rolloutStartedAt;
  await sleep(2 * INTERVAL_MS);
  sampling = false;
  await sampler;
  await tally.sample(cluster.nodes);
  const staleSeries =
    (await Promise.all(cluster.nodes.map(scrape))).flatMap((metrics) =>
      metrics.all.filter((sample) =>
        oldAddresses.some((address) => sample.labels.host?.startsWith(`${address}:`))
      )
    ).length;
  const rollingRestart = {
    pods_restarted: nodes,
    duration_ms: round(rolloutMs),
    dial_errors_counted: tally.counted,
    series_left_for_old_pod_ips: staleSeries,
  };

  console.error(`load: ${crowd} more peers for one exporter, 20 ms links, a busy /metrics scraper`);
  await cluster.setDefaultLink({ delay_ms: 20 });
  await cluster.setAllLinks({ delay_ms: 20 });
  await cluster.startCrowd();
  const loaded = cluster.nodes[0]!;
  const peer = cluster.nodes[1]!;
  await cluster.restart(loaded, () => Promise.resolve(), ["--network.max-peers=0"]);
  await waitFor(
    async () =>
      (await scrape(loaded)).value("net_exporter_peers", { state: "selected" }) ===
        crowd + nodes - 1,
    30_000,
    `${loaded.name} probes every peer`,
  );
  await sleep(3 * INTERVAL_MS);
  let scraping = true;
  const scrapeTimes: number[] = [];
  const scraper = (async () => {
    while (scraping) {
      const startedAt = performance.now();
      await scrape(loaded);
      scrapeTimes.push(performance.now() - startedAt);
    }
  })();
  const loadBefore = await scrape(loaded);
  const loadStartedAt = performance.now();
  const loadedSamples = await exporterSamples(loaded, peer, 10, INTERVAL_MS);
  const loadReference = await cluster.reference(loaded, [peer.address], 20);
  const loadAfter = await scrape(loaded);
  const loadSeconds = (performance.now() - loadStartedAt) / 1000;
  scraping = false;
  await scraper;
  const sum = (metrics: typeof loadAfter, name: string) =>
    metrics.samples(name).reduce((total, sample) => total + sample.value, 0);
  const load = {
    peers_probed: crowd + nodes - 1,
    probes_per_second: round(
      (sum(loadAfter, "network_latency_seconds_count") +
        sum(loadAfter, "network_dial_error_total") -
        sum(loadBefore, "network_latency_seconds_count") -
        sum(loadBefore, "network_dial_error_total")) / loadSeconds,
    ),
    scrapes_per_second: round(scrapeTimes.length / loadSeconds),
    scrape_median_ms: round(median(scrapeTimes)),
    exporter_median_ms: round(median(loadedSamples)),
    exporter_p99_ms: round(quantile(loadedSamples, 0.99)),
    reference_median_ms: round(median(loadReference)),
    reference_p99_ms: round(quantile(loadReference, 0.99)),
    median_error_vs_reference_ms: round(median(loadedSamples) - median(loadReference)),
    late_starts: sum(loadAfter, "net_exporter_probe_delayed_total") -
      sum(loadBefore, "net_exporter_probe_delayed_total"),
  };

  const report = {
    started,
    machine: `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores`,
    nodes,
    interval_ms: INTERVAL_MS,
    timeout_ms: TIMEOUT_MS,
    floor,
    accuracy: accuracyRows,
    detection: {
      cut_node_seen_by_peer_ms: round(peerDetects),
      cut_node_sees_peers_unreachable_ms: round(cutNodeDetects),
      bound_ms: INTERVAL_MS + TIMEOUT_MS,
      dns_silent_ms: dnsSilent,
      dns_servfail_ms: dnsServfail,
    },
    loss: lossRows,
    mtu_black_hole: mtu,
    rolling_restart: rollingRestart,
    load,
  };
  await Deno.mkdir(args.out!, { recursive: true });
  await Deno.writeTextFile(`${args.out}/report.json`, JSON.stringify(report, null, 2) + "\n");
  await Deno.writeTextFile(`${args.out}/report.md`, markdown(report));
  console.log(markdown(report));
  // A run with the documented settings rewrites the document's results; others only their report.
  if (args.nodes === DEFAULT_NODES && args.crowd === DEFAULT_CROWD) {
    console.error(
      `wrote ${await rewriteDocsBlock(
        "reports/simulation.md",
        "sim",
        "deno task sim",
        markdown(report),
      )}`,
    );
  }
}

// deno-lint-ignore no-explicit-any
function markdown(report: any): string {
  const lines = [
    `Simulation of ${report.nodes} nodes, probe interval ${report.interval_ms} ms, timeout ${report.timeout_ms} ms, ${report.machine}, ${report.started}.`,
    "",
    `Emulator floor (no impairment, reference tool): median ${report.floor.median_ms} ms, p99 ${report.floor.p99_ms} ms.`,
    "",
    "| one-way delay (ms) | injected RTT (ms) | exporter median (ms) | exporter p99 (ms) | histogram mean (ms) | reference median (ms) | reference p99 (ms) | median error vs reference (ms) |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...report.accuracy.map((row: AccuracyRow) =>
      `| ${row.injected_one_way_ms} | ${row.injected_rtt_ms} | ${row.exporter_median_ms} | ${row.exporter_p99_ms} | ${row.exporter_histogram_mean_ms} | ${row.reference_median_ms} | ${row.reference_p99_ms} | ${row.median_error_vs_reference_ms} |`
    ),
    "",
    "| detection | time (ms) | bound: interval + timeout (ms) |",
    "| --- | ---: | ---: |",
    `| cut node, seen by a peer (timeout errors) | ${report.detection.cut_node_seen_by_peer_ms} | ${report.detection.bound_ms} |`,
    `| cut node, sees its peers unreachable | ${report.detection.cut_node_sees_peers_unreachable_ms} | ${report.detection.bound_ms} |`,
    `| DNS server silent (timeout errors) | ${report.detection.dns_silent_ms} | ${report.detection.bound_ms} |`,
    `| DNS server answers SERVFAIL | ${report.detection.dns_servfail_ms} | ${report.detection.bound_ms} |`,
    "",
    "| packet loss, both ways | probes | succeeded | timeouts | timeout share | success median (ms) | success max (ms) | echoes | echo loss read | echo loss, 1 − (1 − loss)² |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    // deno-lint-ignore no-explicit-any
    ...report.loss.map((row: any) =>
      `| ${
        row.loss * 100
      }% | ${row.probes} | ${row.succeeded} | ${row.timeouts} | ${row.timeout_share} | ${row.success_median_ms} | ${row.success_max_ms} | ${row.echo_sent} | ${row.echo_lost_share} | ${row.echo_expected_share} |`
    ),
    "",
    "| MTU black hole (packets over 1,400 bytes dropped, MTU 1,500) | value |",
    "| --- | ---: |",
    `| full-size echo payload tried (bytes) | ${report.mtu_black_hole.full_size_bytes} |`,
    `| full-size echoes lost | ${report.mtu_black_hole.full_lost_share} |`,
    `| small echoes lost | ${report.mtu_black_hole.small_lost_share} |`,
    `| TCP handshakes to the same peer / dial errors | ${report.mtu_black_hole.handshakes} / ${report.mtu_black_hole.dial_errors} |`,
    `| the echo target's state on the status page | ${report.mtu_black_hole.echo_state} |`,
    "",
    "| rolling restart (new pod names and IPs, healthy links) | value |",
    "| --- | ---: |",
    `| pods restarted, one at a time | ${report.rolling_restart.pods_restarted} |`,
    `| duration (ms) | ${report.rolling_restart.duration_ms} |`,
    `| dial errors counted | ${report.rolling_restart.dial_errors_counted} |`,
    `| series left for old pod IPs | ${report.rolling_restart.series_left_for_old_pod_ips} |`,
    "",
    `| under load: one exporter probing ${report.load.peers_probed} peers, 20 ms links, a busy scraper | value |`,
    "| --- | ---: |",
    `| probes per second | ${report.load.probes_per_second} |`,
    `| scrapes per second (median ${report.load.scrape_median_ms} ms each) | ${report.load.scrapes_per_second} |`,
    `| exporter median / p99 (ms) | ${report.load.exporter_median_ms} / ${report.load.exporter_p99_ms} |`,
    `| reference median / p99 (ms) | ${report.load.reference_median_ms} / ${report.load.reference_p99_ms} |`,
    `| median error vs reference (ms) | ${report.load.median_error_vs_reference_ms} |`,
    `| probes started late (net_exporter_probe_delayed_total) | ${report.load.late_starts} |`,
    "",
  ];
  return lines.join("\n");
}

const nodes = Number(args.nodes);
const crowd = Number(args.crowd);
const cluster = await createForCommandLine({
  crowd,
  nodes,
  intervalMs: INTERVAL_MS,
  timeoutMs: TIMEOUT_MS,
});
try {
  await main(cluster, nodes, crowd);
} catch (error) {
  console.error(error);
  await exitAfterTeardown(cluster, 1);
}
await exitAfterTeardown(cluster, 0);
