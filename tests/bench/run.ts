/**
 * `deno task bench`: resident memory, /metrics time, probe CPU, probing
 * regularity and timing under a back-to-back scraper of the real exporter
 * with 10, 1,000 and 5,000 static targets at a 1 s interval, all on
 * 127.0.0.1, handshakes timed by the kernel (the default), and at 1,000 and
 * 5,000 by the exporter's own clock too. Prints a Markdown table and JSON.
 *
 * Usage: deno task bench [sizes...]   (default: 10 1000 5000)
 */

import { startExporter, waitFor } from "../helpers/exporter_process.ts";
import { Exposition } from "../helpers/metrics.ts";
import { processUsage } from "../helpers/proc.ts";
import { rewriteDocsBlock } from "../helpers/docs.ts";
import { quantile } from "../helpers/stats.ts";
import { CHILD_ENV } from "../helpers/requirements.ts";

const WARM_UP_MS = 5_000;
const WINDOW_MS = 10_000;
const SCRAPES = 20;

interface Row {
  targets: number;
  clock: "kernel" | "wall";
  rssMiB: number;
  peakRssMiB: number;
  scrapeMsMedian: number;
  scrapeMsP90: number;
  metricsBytes: number;
  probesInWindow: number;
  probesPerTargetMin: number;
  probesPerTargetMax: number;
  cpuSecondsPer1000Probes: number;
  /** The exporter's threads at the end of the steady window. */
  threads: number;
  delayedInWindow: number;
  /** Share of handshakes read over 5.6 ms (loopback: truly ~0.1 ms), steady and under a busy scraper. */
  over5msQuietPercent: number;
  over5msBusyPercent: number;
  busyScrapesPerSecond: number;
}

/** Percentage of handshakes between two scrapes that the histogram puts above `le` seconds. */
function percentOver(before: Exposition, after: Exposition, le: string): number {
  const total = (metrics: Exposition, bound: string) =>
    metrics.samples("network_latency_seconds_bucket", { le: bound }).reduce(
      (sum, sample) => sum + sample.value,
      0,
    );
  const all = total(after, "+Inf") - total(before, "+Inf");
  const within = total(after, le) - total(before, le);
  return +((all - within) / all * 100).toFixed(2);
}

const mib = (bytes: number) => +(bytes / 2 ** 20).toFixed(1);

function probeCounts(metrics: Exposition): Map<string, number> {
  const counts = new Map<string, number>();
  for (const sample of metrics.samples("network_latency_seconds_count")) {
    counts.set(sample.labels.host!, (counts.get(sample.labels.host!) ?? 0) + sample.value);
  }
  for (const sample of metrics.samples("network_dial_error_total")) {
    counts.set(sample.labels.host!, (counts.get(sample.labels.host!) ?? 0) + sample.value);
  }
  return counts;
}

async function scrape(url: string): Promise<{ ms: number; text: string }> {
  const startedAt = performance.now();
  const text = await (await fetch(`${url}/metrics`)).text();
  return { ms: performance.now() - startedAt, text };
}

async function measure(targets: number, clock: Row["clock"]): Promise<Row> {
  const listenerProcess = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      new URL("./listeners.ts", import.meta.url).pathname,
      String(targets),
    ],
    env: CHILD_ENV,
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = listenerProcess.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) text += (await reader.read()).value ?? "";
  const ports = JSON.parse(text) as number[];
  try {
    await using exporter = await startExporter(
      [
        "--no-collector.dns",
        "--network.interval=1s",
        "--network.timeout=500ms",
        `--network.clock=${clock}`,
      ],
      { env: { NET_EXPORTER_NETWORK_TARGETS: ports.map((port) => `127.0.0.1:${port}`).join(",") } },
    );
    const pid = exporter.child.pid;
    await waitFor(
      async () => (await fetch(`${exporter.url}/readyz`).then((r) => r.text())) === "ready\n",
      10_000,
      "ready",
    );
    await new Promise((resolve) => setTimeout(resolve, WARM_UP_MS));

    const first = await scrape(exporter.url);
    const cpuBefore = (await processUsage(pid))!.cpuSeconds;
    const before = new Exposition(first.text);
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
    const steady = (await processUsage(pid))!; // before the scrape-timing burst below
    const last = await scrape(exporter.url);
    const after = new Exposition(last.text);

    const countsBefore = probeCounts(before);
    const perTarget = [...probeCounts(after)].map(([host, count]) =>
      count - (countsBefore.get(host) ?? 0)
    );
    const probes = perTarget.reduce((sum, count) => sum + count, 0);
    const delayed = after.value("net_exporter_probe_delayed_total", { collector: "network" }) -
      before.value("net_exporter_probe_delayed_total", { collector: "network" });

    const scrapeTimes: number[] = [];
    for (let i = 0; i < SCRAPES; i++) scrapeTimes.push((await scrape(exporter.url)).ms);

    // The same window again while a scraper pulls /metrics back to back.
    const busyBefore = new Exposition((await scrape(exporter.url)).text);
    let scraping = true;
    let busyScrapes = 0;
    const scraper = (async () => {
      while (scraping) {
        await scrape(exporter.url);
        busyScrapes++;
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
    scraping = false;
    await scraper;
    const busyAfter = new Exposition((await scrape(exporter.url)).text);
    const row: Row = {
      targets,
      clock,
      rssMiB: mib(steady.rssBytes),
      peakRssMiB: mib((await processUsage(pid))!.peakRssBytes),
      scrapeMsMedian: +quantile(scrapeTimes, 0.5).toFixed(2),
      scrapeMsP90: +quantile(scrapeTimes, 0.9).toFixed(2),
      metricsBytes: last.text.length,
      probesInWindow: probes,
      probesPerTargetMin: Math.min(...perTarget),
      probesPerTargetMax: Math.max(...perTarget),
      cpuSecondsPer1000Probes: +((steady.cpuSeconds - cpuBefore) / probes * 1000).toFixed(3),
      threads: steady.threads,
      delayedInWindow: delayed,
      over5msQuietPercent: percentOver(before, after, "0.0056"),
      over5msBusyPercent: percentOver(busyBefore, busyAfter, "0.0056"),
      busyScrapesPerSecond: +(busyScrapes / (WINDOW_MS / 1000)).toFixed(1),
    };
    const { code } = await exporter.stop();
    if (code !== 0) throw new Error(`exporter exited ${code}`);
    return row;
  } finally {
    await listenerProcess.stdin.close();
    await reader.cancel();
    await listenerProcess.status;
  }
}

const runs: Array<[number, Row["clock"]]> = Deno.args.length > 0
  ? Deno.args.map((size) => [Number(size), "kernel"])
  : [[10, "kernel"], [1_000, "kernel"], [5_000, "kernel"], [1_000, "wall"], [5_000, "wall"]];
const rows: Row[] = [];
for (const [size, clock] of runs) {
  const row = await measure(size, clock);
  rows.push(row);
  console.error(JSON.stringify(row));
}
const lines = [
  `| targets | clock | RSS (MiB) | peak RSS (MiB) | /metrics median (ms) | /metrics p90 (ms) | /metrics size (bytes) | probes in ${
    WINDOW_MS / 1000
  } s | per target min–max | CPU s / 1,000 probes | threads | late starts | handshakes > 5.6 ms, steady / busy scraper | busy scrapes/s |`,
  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ...rows.map((row) =>
    `| ${row.targets} | ${row.clock} | ${row.rssMiB} | ${row.peakRssMiB} | ${row.scrapeMsMedian} | ${row.scrapeMsP90} | ${row.metricsBytes} | ${row.probesInWindow} | ${row.probesPerTargetMin}–${row.probesPerTargetMax} | ${row.cpuSecondsPer1000Probes} | ${row.threads} | ${row.delayedInWindow} | ${row.over5msQuietPercent}% / ${row.over5msBusyPercent}% | ${row.busyScrapesPerSecond} |`
  ),
];
console.log(lines.join("\n"));
console.log(
  "\n```json\n" +
    JSON.stringify({ date: new Date().toISOString(), deno: Deno.version.deno, rows }, null, 2) +
    "\n```",
);
// A partial run (sizes given) prints its figures but leaves the document's full table alone.
if (Deno.args.length === 0) {
  const written = await rewriteDocsBlock(
    "reports/benchmark.md",
    "bench",
    "deno task bench",
    lines.join("\n"),
  );
  console.error(`wrote ${written}`);
}
