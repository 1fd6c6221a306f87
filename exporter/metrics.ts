/**
 * The exporter's own metrics: build info, process figures read from Deno
 * (prom-client's process collector reads /proc and needs every permission
 * under Deno, else it reports 0), and the scheduler's health.
 * @module
 */

import process from "node:process";
import * as client from "../lib/prom_client.ts";
import type { SharedMetrics } from "../collectors/collector.ts";
import denoJson from "../deno.json" with { type: "json" };

/** Version of this build, from deno.json. */
export const VERSION: string = denoJson.version;

/** The exporter's registry with the metrics every collector shares. */
export type ExporterMetrics = SharedMetrics;

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
