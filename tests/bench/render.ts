/**
 * `deno task bench` (its render part): the time to write `/metrics` for 500
 * and 5,000 targets, prom-client's own `registry.metrics()` (and encoding its
 * string, as a response must) against `lib/exposition.ts`, and the protobuf
 * exposition with native buckets (`lib/exposition_proto.ts`), on one registry
 * with the network collector's families, each probed ten times. Both give the
 * same bytes (checked here too). Median and p90 of 30 renders after 50 warm-up
 * renders (a running exporter renders every scrape, so its code is warm), in
 * the exporter's V8 flags.
 *
 * Run: deno run --v8-flags=--max-semi-space-size=2 tests/bench/render.ts [--quick]
 * @module
 */

import { createProbeMetrics } from "../../collectors/collector.ts";
import { DEFAULT_BUCKETS } from "../../collectors/pacing.ts";
import { DIAL_ERROR_REASONS } from "../../collectors/probe_tcp.ts";
import { createExporterMetrics } from "../../exporter/metrics.ts";
import { renderRegistry } from "../../lib/exposition.ts";
import { renderRegistryProtobuf } from "../../lib/exposition_proto.ts";
import type { Registry } from "../../lib/prom_client.ts";
import { rewriteDocsBlock } from "../helpers/docs.ts";
import { quantile } from "../helpers/stats.ts";

const QUICK = Deno.args.includes("--quick");
const RUNS = QUICK ? 3 : 30;
const WARM_UP = QUICK ? 1 : 50;

/** A registry as the exporter holds it for `targets` dialled targets. */
export function registryFor(targets: number): Registry {
  const shared = createExporterMetrics();
  const metrics = createProbeMetrics(shared, {
    prefix: "network",
    labelNames: ["host", "target_node"],
    buckets: DEFAULT_BUCKETS,
    measured: "TCP handshakes to a target (host is ip:port)",
    errors: {
      name: "network_dial_error_total",
      help: "Failed TCP dials.",
      reasons: DIAL_ERROR_REASONS,
    },
    internalHelp: "Errors inside the collector.",
  });
  for (let i = 0; i < targets; i++) {
    const labels = { host: `10.${i >> 8 & 255}.${i & 255}.7:8000`, target_node: `node-${i}` };
    for (let probe = 0; probe < 10; probe++) metrics.latency.observe(labels, (1 + probe) / 1000);
    metrics.lastLatency.set(labels, 0.01);
    metrics.success.set(labels, 1);
    for (const reason of DIAL_ERROR_REASONS) metrics.errors.inc({ ...labels, reason }, 0);
  }
  return shared.registry;
}

async function timed(render: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < WARM_UP; i++) await render();
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const startedAt = performance.now();
    await render();
    times.push(performance.now() - startedAt);
  }
  return times;
}

/** One row per size: bytes, and median/p90 ms of each renderer. */
export async function measureRenders(sizes: readonly number[]) {
  const rows = [];
  for (const targets of sizes) {
    const registry = registryFor(targets);
    const ours = await renderRegistry(registry);
    // The process figures are read anew at each render; everything else must be the same bytes.
    const steady = (text: string) => text.replace(/^process_\w+ .*$/gm, "");
    if (steady(new TextDecoder().decode(ours)) !== steady(await registry.metrics())) {
      throw new Error(`Cannot compare renders: the texts differ at ${targets} targets`);
    }
    const encoder = new TextEncoder();
    const promClient = await timed(async () => encoder.encode(await registry.metrics()));
    const exposition = await timed(() => renderRegistry(registry));
    const protobufBytes = (await renderRegistryProtobuf(registry)).length;
    const protobuf = await timed(() => renderRegistryProtobuf(registry));
    const round = (ms: number) => +ms.toFixed(2);
    rows.push({
      targets,
      bytes: ours.length,
      promClientMedianMs: round(quantile(promClient, 0.5)),
      promClientP90Ms: round(quantile(promClient, 0.9)),
      expositionMedianMs: round(quantile(exposition, 0.5)),
      expositionP90Ms: round(quantile(exposition, 0.9)),
      protobufBytes,
      protobufMedianMs: round(quantile(protobuf, 0.5)),
      protobufP90Ms: round(quantile(protobuf, 0.9)),
    });
  }
  return rows;
}

/**
 * The same measurement at 5,000 targets in a child process whose V8 runs
 * with `--lite-mode` added (no optimizing compiler: less memory, slower code),
 * for the question whether the shipped binary could use it.
 */
async function measureLiteMode(): Promise<Awaited<ReturnType<typeof measureRenders>>> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-env",
      "--allow-read",
      "--v8-flags=--max-semi-space-size=2,--lite-mode",
      new URL(import.meta.url).pathname,
      "--json",
      ...(QUICK ? ["--quick"] : []),
    ],
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!output.success) {
    throw new Error("Cannot measure renders under --lite-mode: the child failed");
  }
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

if (import.meta.main && Deno.args.includes("--json")) {
  console.log(JSON.stringify(await measureRenders(QUICK ? [50] : [5_000])));
} else if (import.meta.main) {
  const rows = [
    ...(await measureRenders(QUICK ? [50] : [500, 5_000])).map((row) => ({ ...row, v8: "" })),
    ...(await measureLiteMode()).map((row) => ({ ...row, v8: " (V8 `--lite-mode`)" })),
  ];
  const markdown = [
    "| targets | text bytes | prom-client `registry.metrics()` + encode, median / p90 (ms) | `lib/exposition.ts`, median / p90 (ms) | protobuf bytes (native + classic buckets) | `lib/exposition_proto.ts`, median / p90 (ms) |",
    "|---:|---:|---:|---:|---:|---:|",
    ...rows.map((row) =>
      `| ${row.targets}${row.v8} | ${row.bytes} | ${row.promClientMedianMs} / ${row.promClientP90Ms} | ${row.expositionMedianMs} / ${row.expositionP90Ms} | ${row.protobufBytes} | ${row.protobufMedianMs} / ${row.protobufP90Ms} |`
    ),
  ].join("\n");
  console.log(markdown);
  if (!QUICK) {
    console.error(
      `wrote ${await rewriteDocsBlock(
        "reports/benchmark.md",
        "render",
        "deno task bench",
        markdown,
      )}`,
    );
  }
}
