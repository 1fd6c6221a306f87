/**
 * The exporter's own metrics: build info, process figures read from Deno
 * (prom-client's process collector reads /proc and needs every permission
 * under Deno, else it reports 0), and the scheduler's health.
 * @module
 */

import process from "node:process";
import * as client from "../lib/prom_client.ts";
import type { SharedMetrics } from "../collectors/collector.ts";
import { type FlagValues, integerFlag, valueFlag } from "../lib/flags.ts";
import { type NativeHistogramOptions, schemaForFactor } from "../lib/histogram.ts";
import denoJson from "../deno.json" with { type: "json" };

/** Version of this build, from deno.json. */
export const VERSION: string = denoJson.version;

/** The exporter's registry with the metrics every collector shares. */
export type ExporterMetrics = SharedMetrics;

/** Native buckets as the flags' defaults give them. */
export const DEFAULT_NATIVE_HISTOGRAMS: NativeHistogramOptions = {
  bucketFactor: 1.1,
  maxBuckets: 160,
};

const NATIVE_BUCKET_FACTOR = valueFlag(
  "metrics.native-histogram-bucket-factor",
  "factor",
  "Growth of each native histogram bucket over the one before, as client_golang's " +
    "NativeHistogramBucketFactor (1.1: schema 3, 8 buckets per power of two), served to " +
    "scrapes that ask for protobuf; 0: classic buckets only",
  String(DEFAULT_NATIVE_HISTOGRAMS.bucketFactor),
  (text) => {
    const factor = Number(text);
    if (text.trim() === "" || !(factor === 0 || factor > 1)) {
      throw new RangeError(`Cannot use value: current value is "${text}", expected 0 or above 1`);
    }
    if (factor > 0) schemaForFactor(factor);
    return factor;
  },
);
const NATIVE_MAX_BUCKETS = integerFlag(
  "metrics.native-histogram-max-buckets",
  "Populated native buckets a series may hold; past it, its resolution halves (0: no cap)",
  DEFAULT_NATIVE_HISTOGRAMS.maxBuckets,
  { allowZero: true },
);

/** The flags of the exporter's metrics. */
export const METRICS_FLAGS = [NATIVE_BUCKET_FACTOR, NATIVE_MAX_BUCKETS] as const;

/** Reads the native histogram flags. */
export function configureNativeHistograms(values: FlagValues): NativeHistogramOptions {
  return {
    bucketFactor: NATIVE_BUCKET_FACTOR.read(values),
    maxBuckets: NATIVE_MAX_BUCKETS.read(values),
  };
}

/**
 * Creates a registry holding the exporter's own metrics; the collectors'
 * latency histograms carry native buckets as `nativeHistograms` says.
 */
export function createExporterMetrics(
  nativeHistograms: NativeHistogramOptions = DEFAULT_NATIVE_HISTOGRAMS,
): ExporterMetrics {
  const registry = new client.Registry();
  const registers = [registry];
  new client.Gauge({
    name: "net_exporter_build_info",
    help: "Build information; always 1.",
    labelNames: ["version", "deno"],
    registers,
  }).set({ version: VERSION, deno: Deno.version.deno }, 1);
  new client.Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers,
    collect() {
      this.set(Deno.memoryUsage().rss);
    },
  });
  new client.Gauge({
    name: "process_heap_bytes",
    help: "V8 heap in use, in bytes.",
    registers,
    collect() {
      this.set(Deno.memoryUsage().heapUsed);
    },
  });
  new client.Counter({
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
    registers,
    collect() {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6);
    },
  });
  new client.Gauge({
    name: "process_start_time_seconds",
    help: "Start time of the process since unix epoch in seconds.",
    registers,
  }).set(Math.round((Date.now() - performance.now()) / 1000));
  const targets = new client.Gauge({
    name: "net_exporter_targets",
    help: "Targets each collector probes.",
    labelNames: ["collector"],
    registers,
  });
  const probesLate = new client.Counter({
    name: "net_exporter_probe_delayed_total",
    help: "Probes that started more than 50 ms after their slot, or skipped a slot, because the " +
      "event loop was busy or the concurrency limit was reached. A rising rate means latency " +
      "figures include the exporter's own delay.",
    labelNames: ["collector"],
    registers,
  });
  return { registry, targets, probesLate, nativeHistograms };
}
