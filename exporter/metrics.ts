/**
 * The exporter's own metrics: build info, process figures read from Deno
 * (prom-client's process collector reads /proc and needs every permission
 * under Deno, else it reports 0), and the scheduler's health.
 * @module
 */

import process from "node:process";
import client from "prom-client";
import denoJson from "../deno.json" with { type: "json" };

/** Version of this build, from deno.json. */
export const VERSION: string = denoJson.version;

/** Metrics every collector shares: how many targets it has and how often it ran late. */
export interface ExporterMetrics {
  readonly registry: client.Registry;
  readonly targets: client.Gauge<"collector">;
  readonly probesLate: client.Counter<"collector">;
}

/** Creates a registry holding the exporter's own metrics. */
export function createExporterMetrics(): ExporterMetrics {
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
  return { registry, targets, probesLate };
}

/**
 * Latency buckets from 0.5 ms to 8 s on a 1-2.5-5 scale, so thresholds people
 * alert on (10 ms, 100 ms, 250 ms, 500 ms, 1 s) are bucket edges, and TCP's
 * SYN retransmits (≈1 s, ≈3 s) land in buckets of their own.
 */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  8,
];
