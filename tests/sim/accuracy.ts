/**
 * `deno task bench:accuracy`: what the numbers users act on read at
 * in-cluster latencies — the p50 and p95 that real Prometheus servers compute
 * from the exporter's histograms — against the round trips the kernel
 * measured for an independent program's own handshakes in the same window.
 *
 * Two simulated nodes; node-0's exporter dials node-1's (the kernel clock,
 * the default buckets, native buckets). Beside it on node-0, the exporter as
 * it was (`--network.clock=wall`, the old 0.5 ms-first buckets, no native
 * buckets) dials the same peer. Three servers scrape both about every 2 s:
 * - Debian's Prometheus 2.42 with `--enable-feature=native-histograms` and
 *   `scrape_classic_histograms`: native and classic from the same scrapes;
 * - Debian's Prometheus 2.42 without it: text scrapes, classic buckets only;
 * - Prometheus 3 (tests/helpers/prometheus3.ts) with
 *   `scrape_native_histograms: true`: native only.
 * For each one-way link delay (0, 1, 10, 100 ms) with and without three busy
 * loops on the cores, a window of {@link WINDOW_S} s: Python's TCP_INFO
 * reference from node-0 to node-1 runs through it, then each server is asked
 * `histogram_quantile` over the window — the native form, the classic form,
 * and the chart's own `native or classic` form that its rules and dashboard
 * use. Results go to report.json and (full runs) docs/reports/accuracy.md.
 *
 * The link emulator runs on a CPU of its own, apart from the nodes' processes
 * (`--shared-cores` to share them): a wire takes no CPU from the senders, and
 * an emulator that waits for a sender to yield its core adds to the senders'
 * round trips in a way that depends on how each sender waits.
 *
 * Usage (as root): deno task bench:accuracy [--quick] [--shared-cores] [--out=accuracy-report]
 * @module
 */

import { parseArgs } from "node:util";
import {
  createForCommandLine,
  exitAfterTeardown,
  EXPORTER_PORT,
  type SimCluster,
} from "./cluster.ts";
import { type PrometheusServer, startPrometheus } from "./prometheus.ts";
import { rewriteDocsBlock } from "../helpers/docs.ts";
import { prometheus3Bin } from "../helpers/prometheus3.ts";
import { quantile } from "../helpers/stats.ts";

/** The window each figure covers, in seconds. */
export const WINDOW_S = 60;
const PROBE_INTERVAL_MS = 500;
const PROBE_TIMEOUT_MS = 450;
/**
 * Every periodic sender crossing the emulator runs at a period of its own, none a multiple of
 * another: the schedulers keep a fixed phase once started, and two senders locked in phase would
 * meet (or miss) each other in the emulator's queue at every round, biasing one of them for the
 * whole run. (A first version with 500, 500, 200 ms and 2 s read 0 ms links −18% in one run and
 * +50% in the next.)
 */
const SCRAPE_INTERVAL = "2110ms";
const PEER_INTERVAL_MS = 470;
const OLD_INTERVAL_MS = 610;
const REFERENCE_PERIOD_MS = 173;
/** A second reference, the same program at another period: how far two honest instruments differ. */
const SECOND_REFERENCE_PERIOD_MS = 211;
/** The port of the exporter as it was, beside the pod's on node-0. */
const OLD_PORT = 8001;
/** The exporter's default buckets before issue #30. */
const OLD_BUCKETS = "0.0005,0.001,0.0025,0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,8";

/** One phase: a one-way delay on every link, with or without busy loops. */
export interface Phase {
  readonly delayMs: number;
  readonly busy: boolean;
}

/** The phases of a full run, and of a quick one. */
export const PHASES: readonly Phase[] = [0, 1, 10, 100].flatMap((delayMs) =>
  [false, true].map((busy) => ({ delayMs, busy }))
);
export const QUICK_PHASES: readonly Phase[] = [{ delayMs: 0, busy: true }, {
  delayMs: 10,
  busy: false,
}];

/** How a figure is asked for. */
interface Reading {
  readonly server: "native only (2.42)" | "classic only (2.42)" | "native and classic (3.x)";
  readonly form: "native" | "classic" | "chart" | "old exporter" | "last-latency gauge";
  readonly job: "new" | "old";
}

const READINGS: readonly Reading[] = [
  { server: "native only (2.42)", form: "native", job: "new" },
  { server: "native only (2.42)", form: "chart", job: "new" },
  { server: "classic only (2.42)", form: "classic", job: "new" },
  { server: "classic only (2.42)", form: "chart", job: "new" },
  { server: "native and classic (3.x)", form: "native", job: "new" },
  { server: "native and classic (3.x)", form: "classic", job: "new" },
  { server: "native and classic (3.x)", form: "chart", job: "new" },
  { server: "classic only (2.42)", form: "old exporter", job: "old" },
  { server: "classic only (2.42)", form: "last-latency gauge", job: "new" },
];

/** The PromQL of a reading at quantile `q`. */
export function readingQuery(reading: Reading, q: number, window = `${WINDOW_S}s`): string {
  // The old exporter dials node-1 as a static target: its series have no target_node.
  const selector = reading.job === "old" ? `{job="old"}` : `{job="new",target_node="node-1"}`;
  const native =
    `histogram_quantile(${q}, sum(rate(network_latency_seconds${selector}[${window}])))`;
  const classic =
    `histogram_quantile(${q}, sum by (le) (rate(network_latency_seconds_bucket${selector}[${window}])))`;
  switch (reading.form) {
    case "native":
      return native;
    case "classic":
    case "old exporter":
      return classic;
    case "chart":
      // As the chart's rules and dashboard write every quantile.
      return `${native} or ${classic}`;
    case "last-latency gauge":
      // The exact figures of the probes the scrapes caught: no bucket in the way.
      return `quantile_over_time(${q}, network_last_latency_seconds${selector}[${window}])`;
  }
}

/** One row: a phase, the reference, and each reading's p50 and p95 (ms; NaN when none). */
export interface Row extends Phase {
  readonly referenceP50Ms: number;
  readonly referenceP95Ms: number;
  /** The second reference's p50 and p95, taken in the same window. */
  readonly secondReferenceP50Ms: number;
  readonly secondReferenceP95Ms: number;
  readonly samples: number;
  readonly readings: ReadonlyArray<Reading & { p50Ms: number; p95Ms: number }>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Three processes that spin, one more than the cores here, as a busy node has. */
async function withBusyLoops<T>(busy: boolean, run: () => Promise<T>): Promise<T> {
  if (!busy) return await run();
  const loops = Array.from({ length: 3 }, () =>
    new Deno.Command("python3", {
      args: ["-c", "import sys\nwhile True: pass"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn());
  try {
    return await run();
  } finally {
    for (const loop of loops) {
      try {
        loop.kill("SIGKILL");
      } catch { /* gone */ }
      await loop.status;
    }
  }
}

async function valueMs(server: PrometheusServer, expr: string): Promise<number> {
  const result = await server.query(expr);
  const value = Number(result[0]?.value[1] ?? NaN);
  return value * 1000;
}

/** Servers and exporters for a run, on an existing 2-node cluster. */
export async function startAccuracyRig(cluster: SimCluster, dir: string) {
  const [node0, node1] = cluster.nodes as [SimCluster["nodes"][0], SimCluster["nodes"][0]];
  // node-1 is the target; its own probes of node-0 keep a period of their own.
  await cluster.startExporters(
    ["--no-collector.dns"],
    (node) =>
      node === node1
        ? [
          `--network.interval=${PEER_INTERVAL_MS}ms`,
          `--network.timeout=${PROBE_TIMEOUT_MS - 30}ms`,
        ]
        : [],
  );
  await cluster.startExtraExporter(node0, OLD_PORT, [
    "--k8s.discovery=off",
    "--no-collector.dns",
    `--network.targets=${node1.address}:${EXPORTER_PORT}`,
    `--network.interval=${OLD_INTERVAL_MS}ms`,
    `--network.timeout=${PROBE_TIMEOUT_MS}ms`,
    "--network.clock=wall",
    `--network.buckets=${OLD_BUCKETS}`,
    "--metrics.native-histogram-bucket-factor=0",
  ]);
  const job = (name: string, port: number, extra: Record<string, unknown> = {}) => ({
    job_name: name,
    scrape_interval: SCRAPE_INTERVAL,
    scrape_timeout: "1500ms",
    static_configs: [{ targets: [`${node0.address}:${port}`] }],
    ...extra,
  });
  const servers: Record<Reading["server"], PrometheusServer> = {} as never;
  const start = async (
    name: Reading["server"],
    options: { binary?: string; flags?: string[]; newJob?: Record<string, unknown> },
  ) => {
    const serverDir = `${dir}/${name.replace(/\W+/g, "-")}`;
    await Deno.mkdir(serverDir);
    const server = await startPrometheus({
      job: job("new", EXPORTER_PORT, options.newJob),
      moreJobs: [job("old", OLD_PORT)],
      ruleGroups: [],
      evaluationInterval: "15s",
      dir: serverDir,
      ...(options.binary ? { binary: options.binary } : {}),
      ...(options.flags ? { flags: options.flags } : {}),
    });
    // Stops before the cluster's addresses go (see SimCluster.beforeTeardown).
    cluster.beforeTeardown(() => server[Symbol.asyncDispose]());
    servers[name] = server;
  };
  await start("native only (2.42)", { flags: ["--enable-feature=native-histograms"] });
  await start("classic only (2.42)", {});
  const prometheus3 = prometheus3Bin("prometheus");
  if (prometheus3) {
    await start("native and classic (3.x)", {
      binary: prometheus3,
      newJob: {
        scrape_native_histograms: true,
        always_scrape_classic_histograms: true,
        scrape_protocols: ["PrometheusProto", "OpenMetricsText1.0.0", "PrometheusText0.0.4"],
      },
    });
  }
  return { node0, node1, servers };
}

/** Runs `phases` on the rig and returns a row per phase. */
export async function measurePhases(
  cluster: SimCluster,
  rig: Awaited<ReturnType<typeof startAccuracyRig>>,
  phases: readonly Phase[],
): Promise<Row[]> {
  const rows: Row[] = [];
  for (const phase of phases) {
    await cluster.setAllLinks({ delay_ms: phase.delayMs });
    const row = await withBusyLoops(phase.busy, async () => {
      // The previous phase's handshakes leave the window before the reference starts.
      await sleep(4_000);
      const [reference, secondReference] = await Promise.all(
        [REFERENCE_PERIOD_MS, SECOND_REFERENCE_PERIOD_MS].map((periodMs) =>
          cluster.reference(
            rig.node0,
            [rig.node1.address],
            Math.floor((WINDOW_S * 1000) / periodMs),
            { periodMs, clock: "kernel" },
          )
        ),
      ) as [number[], number[]];
      // One more scrape, so the window's last handshakes are in every server.
      await sleep(2_500);
      const readings = [];
      for (const reading of READINGS) {
        const server = rig.servers[reading.server];
        if (!server) continue;
        readings.push({
          ...reading,
          p50Ms: await valueMs(server, readingQuery(reading, 0.5)),
          p95Ms: await valueMs(server, readingQuery(reading, 0.95)),
        });
      }
      return {
        ...phase,
        referenceP50Ms: quantile(reference, 0.5),
        referenceP95Ms: quantile(reference, 0.95),
        secondReferenceP50Ms: quantile(secondReference, 0.5),
        secondReferenceP95Ms: quantile(secondReference, 0.95),
        samples: reference.length,
        readings,
      };
    });
    console.error(
      `delay ${phase.delayMs} ms${phase.busy ? " + 3 busy loops" : ""}: reference p50 ${
        row.referenceP50Ms.toFixed(3)
      } ms; ${row.readings.map((r) => `${r.server} ${r.form} ${r.p50Ms.toFixed(3)}`).join("; ")}`,
    );
    rows.push(row);
  }
  await cluster.setAllLinks({ delay_ms: 0 });
  return rows;
}

function signedPercent(value: number, reference: number): string {
  if (!Number.isFinite(value)) return "—";
  const percent = (value / reference - 1) * 100;
  return `${percent >= 0 ? "+" : ""}${percent.toFixed(0)}%`;
}

function ms(value: number): string {
  if (!Number.isFinite(value)) return "—";
  return value < 1 ? value.toFixed(3) : value < 10 ? value.toFixed(2) : value.toFixed(1);
}

/** A table per server and form: each phase's p50 and p95 against the reference. */
export function markdown(rows: readonly Row[]): string {
  const kinds = [
    ...new Set(rows.flatMap((row) => row.readings.map((r) => `${r.server}|${r.form}`))),
  ];
  const sections = kinds.map((kind) => {
    const [server, form] = kind.split("|") as [string, string];
    const title = form === "old exporter"
      ? `**The exporter as it was** (wall clock, first bucket 0.5 ms), classic buckets through ${server}`
      : form === "last-latency gauge"
      ? "**The probes' own figures**: `quantile_over_time` of `network_last_latency_seconds` " +
        "(the probes the scrapes caught, one in four; no bucket in the way)"
      : `**${server}**, ${
        form === "chart" ? "the chart's `native or classic` form" : `${form} form`
      }`;
    const lines = rows.map((row) => {
      const reading = row.readings.find((r) => `${r.server}|${r.form}` === kind);
      if (!reading) return undefined;
      return `| ${row.delayMs} ms${row.busy ? " + 3 busy loops" : ""} | ${
        ms(row.referenceP50Ms)
      } | ${ms(reading.p50Ms)} (${signedPercent(reading.p50Ms, row.referenceP50Ms)}) | ${
        ms(row.referenceP95Ms)
      } | ${ms(reading.p95Ms)} (${signedPercent(reading.p95Ms, row.referenceP95Ms)}) |`;
    }).filter((line) => line !== undefined);
    return [
      title,
      "",
      "| link (one way) | kernel reference p50 (ms) | p50 (ms, error) | kernel reference p95 (ms) | p95 (ms, error) |",
      "|---|---:|---:|---:|---:|",
      ...lines,
    ].join("\n");
  });
  const instrument = [
    "**The instrument itself**: a second reference, the same program at another period " +
    `(${SECOND_REFERENCE_PERIOD_MS} ms), in the same windows, against the first: how far two ` +
    "honest readings of these links differ.",
    "",
    "| link (one way) | kernel reference p50 (ms) | second reference p50 (ms, difference) | kernel reference p95 (ms) | second reference p95 (ms, difference) |",
    "|---|---:|---:|---:|---:|",
    ...rows.map((row) =>
      `| ${row.delayMs} ms${row.busy ? " + 3 busy loops" : ""} | ${ms(row.referenceP50Ms)} | ${
        ms(row.secondReferenceP50Ms)
      } (${signedPercent(row.secondReferenceP50Ms, row.referenceP50Ms)}) | ${
        ms(row.referenceP95Ms)
      } | ${ms(row.secondReferenceP95Ms)} (${
        signedPercent(row.secondReferenceP95Ms, row.referenceP95Ms)
      }) |`
    ),
  ].join("\n");
  return [instrument, ...sections].join("\n\n");
}

/**
 * The link emulator on the last CPU, the nodes' processes (the exporters and the references that
 * are measured) on the others. The busy loops are not pinned: they load every core, the
 * emulator's too. Undefined on a single CPU.
 */
export function emulatorApart(): { emulator: string; nodes: string } | undefined {
  const cpus = navigator.hardwareConcurrency;
  if (cpus < 2) return undefined;
  return { emulator: String(cpus - 1), nodes: cpus === 2 ? "0" : `0-${cpus - 2}` };
}

if (import.meta.main) {
  const { values: args } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      out: { type: "string", default: "accuracy-report" },
      // The link emulator shares the cores with the senders (as runs before 2026-12-05 14:10Z did).
      "shared-cores": { type: "boolean", default: false },
    },
  });
  const cpus = emulatorApart();
  const cluster = await createForCommandLine({
    nodes: 2,
    intervalMs: PROBE_INTERVAL_MS,
    timeoutMs: PROBE_TIMEOUT_MS,
    maxPeers: 1,
    ...(cpus && !args["shared-cores"] ? { cpus } : {}),
  });
  let code = 1;
  const dir = await Deno.makeTempDir({ prefix: "net-exporter-accuracy-" });
  // Registered first, so it runs last: after the Prometheus servers stop, on Ctrl-C too.
  cluster.beforeTeardown(() => Deno.remove(dir, { recursive: true }).catch(() => {}));
  try {
    const started = new Date().toISOString().slice(0, 16) + "Z";
    const rig = await startAccuracyRig(cluster, dir);
    // Every server has scraped both exporters, and a window of handshakes exists.
    await sleep(WINDOW_S * 1000);
    const rows = await measurePhases(cluster, rig, args.quick ? QUICK_PHASES : PHASES);
    await Deno.mkdir(args.out, { recursive: true });
    await Deno.writeTextFile(`${args.out}/report.json`, JSON.stringify({ started, rows }, null, 2));
    const table = markdown(rows);
    console.log(table);
    if (!args.quick) {
      const text = `The exporter probes every ${PROBE_INTERVAL_MS} ms, ` +
        `Prometheus scrapes every ${SCRAPE_INTERVAL}, each figure over a ${WINDOW_S} s window; the reference is Python's own ` +
        `TCP_INFO round trip for a handshake from node-0 to node-1 every ${REFERENCE_PERIOD_MS} ms in the same window. ` +
        (cluster.options.cpus
          ? `The link emulator runs on CPU ${cluster.options.cpus.emulator}, the nodes' processes (exporters, references) on CPU ${cluster.options.cpus.nodes}; the busy loops on every CPU.`
          : "The link emulator shares the CPUs with the nodes' processes (`--shared-cores`).") +
        `\n\n${table}`;
      console.error(
        `wrote ${await rewriteDocsBlock(
          "reports/accuracy.md",
          "in-cluster",
          "deno task bench:accuracy",
          text,
        )}`,
      );
    }
    code = 0;
  } finally {
    await cluster[Symbol.asyncDispose]();
  }
  await exitAfterTeardown(cluster, code);
}
