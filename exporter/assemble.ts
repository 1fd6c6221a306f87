/**
 * Builds what `serve` and `check` both run: the exporter's metrics, the
 * enabled collectors, and discovery feeding the network collector.
 * @module
 */

import type { Collector } from "../collectors/collector.ts";
import { NetworkCollector } from "../collectors/network.ts";
import { createDiscoveryMetrics, Discovery } from "../k8s/discovery.ts";
import type { CommonSettings } from "./cli.ts";
import { logger } from "./log.ts";
import { createExporterMetrics, type ExporterMetrics } from "./metrics.ts";

/** The parts of a running exporter. */
export interface Assembly {
  readonly metrics: ExporterMetrics;
  readonly collectors: readonly Collector[];
  /** Present when discovery is configured and the network collector runs. */
  readonly discovery: Discovery | undefined;
}

/** Creates metrics, collectors and discovery from checked settings; starts nothing. */
export function assemble(settings: CommonSettings): Assembly {
  const metrics = createExporterMetrics();
  const collectors = settings.collectors.map(({ name, create }) =>
    create({ metrics, logger: logger(name) })
  );
  const network = collectors.find((collector) => collector instanceof NetworkCollector);
  const discovery = settings.discovery && network
    ? new Discovery(settings.discovery, {
      network,
      metrics: createDiscoveryMetrics(metrics.registry),
      logger: logger("k8s"),
    })
    : undefined;
  return { metrics, collectors, discovery };
}
