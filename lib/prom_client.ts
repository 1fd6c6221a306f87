/**
 * The four prom-client classes the exporter uses, each loaded from its own
 * module rather than from the package's index. The index also loads the
 * cluster aggregator (`node:cluster`), the Pushgateway client (`node:http`,
 * `node:https`, `node:zlib`, `node:url`) and the default process metrics
 * (`node:perf_hooks`, `node:v8`, `node:fs`), none of which the exporter uses;
 * in Deno each of those Node compatibility modules costs resident memory on
 * every node (the memory table in docs/reports/benchmark.md has the figure). The types
 * are prom-client's own.
 * @module
 */

import type promClient from "prom-client";
import CounterClass from "prom-client/lib/counter.js";
import GaugeClass from "prom-client/lib/gauge.js";
import HistogramClass from "prom-client/lib/histogram.js";
import RegistryClass from "prom-client/lib/registry.js";

/** prom-client's `Registry`. */
export const Registry = RegistryClass as typeof promClient.Registry;
/** prom-client's `Registry`. */
export type Registry = promClient.Registry;
/** prom-client's `Counter`. */
export const Counter = CounterClass as typeof promClient.Counter;
/** prom-client's `Counter`. */
export type Counter<T extends string = string> = promClient.Counter<T>;
/** prom-client's `Gauge`. */
export const Gauge = GaugeClass as typeof promClient.Gauge;
/** prom-client's `Gauge`. */
export type Gauge<T extends string = string> = promClient.Gauge<T>;
/** prom-client's `Histogram`. */
export const Histogram = HistogramClass as typeof promClient.Histogram;
/** prom-client's `Histogram`. */
export type Histogram<T extends string = string> = promClient.Histogram<T>;
